"""Evolution runs owned by the router (task kind ``evolve``).

Mode "islands" (the default, steady state):
- ``engine``: ``IslandEngine``, the asynchronous loop over ports (testable without NATS);
  ``judging`` its scoring half (cascade, validation, the test stage).
- ``database``: FunSearch's islands of behaviour clusters, prompt versions, migration.
- ``program``: the evolved function cut out of an answer and put back into the seed.
- ``prompt``: the versioned prompt a coder-agent gets.

Shared, and mode "generations" (the older generational loop):
- ``scoring``: a candidate's scoring run in code-sandbox and how its output is read.
- ``loop``: ``EvolutionLoop``; ``selection``: its survivors and parents.
- ``service``: ``EvolutionService``, the NATS side wired into the router process: jobs on
  the JOBS stream, a durable consumer per run, sandbox requests, leases, resume, traces.
"""
