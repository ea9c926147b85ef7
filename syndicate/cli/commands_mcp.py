"""``syndicate mcp``: the syndicate's MCP server over stdio, for desktop assistants.

The server is the gateway's (its tools, its NATS user); this command only points it at
the running stack and the folders it may ingest, then becomes it (the operator's package
starts services by module name and never imports them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shared import registry
from shared.settings import Settings
from syndicate.stack_record import resolve_connection

STDIO_MODULE = f"{registry.service('gateway').module}.mcp_stdio"


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(
    allow: Annotated[list[Path] | None, typer.Option(
        "--allow", exists=True, file_okay=False, resolve_path=True,
        help="A folder the ingest tool may read (repeatable; none by default)."),
    ] = None,
) -> None:
    """Serve MCP over stdin/stdout against the running stack (for an assistant's config)."""
    settings = resolve_connection(Settings(), user="gateway")
    env = dict(os.environ)
    env["SYNDICATE_NATS_URL"] = settings.nats_url
    if settings.nats_user and settings.nats_password:
        env.update(SYNDICATE_NATS_USER=settings.nats_user, SYNDICATE_NATS_PASSWORD=settings.nats_password)
    if allow:
        env["SYNDICATE_GATEWAY_INGEST_ROOTS"] = os.pathsep.join(map(str, allow))
    env.setdefault("SYNDICATE_STATE_DIR", str(settings.state_dir))
    os.execvpe(sys.executable, [sys.executable, "-m", STDIO_MODULE], env)
