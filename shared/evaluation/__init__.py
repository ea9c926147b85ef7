"""Evaluation: suites, scoring against bare models or through the agents, quantization
ladders, reports. The evaluator service runs it for queued jobs; ``syndicate eval`` runs
it in the CLI's own process."""
