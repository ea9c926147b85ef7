"""Evolution runs owned by the router (task kind ``evolve``).

- ``selection``: which programs survive a generation and which are shown as parents.
- ``scoring``: a candidate's scoring run in code-sandbox and how its output is read.
- ``prompt``: the mutation prompt a coder-agent gets.
- ``loop``: ``EvolutionLoop``, the generation loop over ports (testable without NATS).
- ``service``: ``EvolutionService``, the NATS side wired into the router process: jobs on
  the JOBS stream, a durable consumer per run, sandbox requests, leases, resume, traces.
"""
