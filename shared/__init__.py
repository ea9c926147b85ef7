"""Agent Syndicate's common package: contracts, subjects, settings, bus, telemetry,
logging, the llama.cpp engine, CPU topology and the CLI. Services depend on this
package only, never on each other."""

__version__ = "0.1.0"
