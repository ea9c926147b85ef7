"""What the router's evolution loop and the ``syndicate evolve`` CLI share: the SPEC file
format (``spec``), the run records in JetStream KV (``store``) and the final report
(``report``). The loop itself lives in ``services/router/evolution/``."""
