"""The ``syndicate`` command line. Each topic lives in its own module with a
``register(app)`` function; this module only assembles them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="syndicate",
    help="Agent Syndicate: multi-agent llama.cpp on CPU servers, over NATS.",
    no_args_is_help=True,
    add_completion=False,
)


def _register_all() -> None:
    from shared.cli import commands_models, commands_stack, commands_tasks

    for module in (commands_stack, commands_tasks, commands_models):
        module.register(app)


def main() -> None:
    _register_all()
    app()
