"""The ``syndicate`` command line. Each topic lives in its own module
``commands_<topic>.py`` with a ``register(app)`` function; this module assembles them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="syndicate",
    help="Agent Syndicate: multi-agent llama.cpp on CPU servers, over NATS.",
    no_args_is_help=True,
    add_completion=False,
)


# Topics in the order `syndicate --help` lists them; any other commands_*.py follows.
ORDER = ("stack", "tasks", "models", "topology", "exec", "retrieval", "mcp", "eval", "deploy")


def _register_all() -> None:
    import importlib
    import pkgutil

    found = [m.name.removeprefix("commands_") for m in pkgutil.iter_modules(__path__) if m.name.startswith("commands_")]
    for topic in sorted(found, key=lambda t: (ORDER.index(t) if t in ORDER else len(ORDER), t)):
        importlib.import_module(f"syndicate.cli.commands_{topic}").register(app)


def main() -> None:
    _register_all()
    app()
