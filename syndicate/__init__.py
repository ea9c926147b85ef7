"""The operator's side of Agent Syndicate: the ``syndicate`` command (``cli/``), the local
supervisor (``supervisor.py``, with ``nats_server.py`` and ``stack_record.py``), deployment
generation (``deploy.py``) and placement wiring (``placement.py``).

It stands on ``shared/`` and starts ``services/`` as processes; nothing below imports it.
"""
