"""Agent Syndicate's floor: what every service imports — contracts, subjects, errors,
settings, the service registry, the bus, the task client, telemetry, logging, the
llama.cpp engine, CPU topology and placement, evaluation and evolution. Services depend
on this package only, never on each other; it imports neither ``services`` nor the
operator's ``syndicate`` package."""

__version__ = "0.1.0"
