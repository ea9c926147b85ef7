"""Model requests: plain generations on the model an agent holds, beside its agent work.

- ``client.py``   ``GenerateClient``: what the gateway (OpenAI and Ollama routes) calls:
                  start a generation, follow its events, cancel it, list the served models.
- ``serve.py``    ``ModelServer``: the agent side, one per process that loads a model.
- ``tool_calls.py`` function calling: the conversation for the template, the parser of
                  what the model writes, the schema checks and the grammar.

The bus protocol (subjects in shared/subjects.py, messages in shared/contracts.py) is
described in docs/gateway.md ("Models").
"""
