"""``syndicate exec``: run a program through the running stack's code-sandbox."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared import subjects
from shared.bus import request
from shared.contracts import ExecLimits, ExecRequest, ExecResult
from shared.errors import SyndicateError
from syndicate.cli.connect import connected_broker

err_console = Console(stderr=True)
STATUS_COLOR = {"ok": "green", "rejected": "yellow", "internal_error": "magenta"}


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_cmd)


def exec_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Python program to run.")],
    stdin: Annotated[Path | None, typer.Option("--stdin", exists=True, dir_okay=False, help="File fed to the program's stdin.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.01, help="Wall and CPU seconds (default: the sandbox's).")] = None,
    memory: Annotated[int | None, typer.Option("--memory", min=1, help="Memory limit in MB (default: the sandbox's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the reply object as JSON.")] = False,
) -> None:
    """Run FILE in code-sandbox and print its output and verdict (exit 0 only when ok)."""
    limits = ExecLimits()
    if timeout is not None:
        limits = limits.model_copy(update={"wall_s": timeout, "cpu_s": timeout})
    if memory is not None:
        limits = limits.model_copy(update={"memory_mb": memory})
    try:
        req = ExecRequest(code=file.read_text(), stdin=stdin.read_text() if stdin else "", limits=limits)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        result = asyncio.run(_exec(req))
    except SyndicateError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    if json_out:
        print(result.model_dump_json(indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        color = STATUS_COLOR.get(result.status, "red")
        detail = [f"exit {result.exit_code}" if result.exit_code is not None else "",
                  f"signal {result.signal}" if result.signal is not None else "",
                  f"{result.wall_s:.3f}s wall", f"{result.cpu_s:.3f}s cpu", f"{result.memory_peak_mb:.0f} MB",
                  f"isolation {result.isolation or '-'}"]
        err_console.print(f"[{color}]{result.status}[/] ({', '.join(d for d in detail if d)})"
                          + (f": {result.message}" if result.message else ""), highlight=False)
    raise typer.Exit(0 if result.status == "ok" else 1)


async def _exec(req: ExecRequest) -> ExecResult:
    async with connected_broker() as broker:
        return await request(broker, subjects.SANDBOX_EXEC, req, ExecResult, timeout=req.limits.wall_s + 30)
