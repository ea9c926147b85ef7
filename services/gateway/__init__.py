"""gateway: an OpenAI-compatible HTTP API and a Prometheus /metrics endpoint in front of
the bus. Every chat/completion request becomes a task on the TASKS stream."""
