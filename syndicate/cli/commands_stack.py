"""``syndicate up``, ``down`` and ``status``: the local stack."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.settings import Settings
from syndicate import supervisor
from syndicate.cli.connect import cli_settings, health_replies
from syndicate.stack_record import read_stack

console = Console()


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)


def up(
    detach: bool = typer.Option(False, "--detach", "-d", help="Start in the background and return once ready."),
    port: int = typer.Option(0, help="NATS port (default 4222, or a free one when taken)."),
    wait: float = typer.Option(300.0, help="Seconds to wait for every service to answer health."),
    nats_cluster: int = typer.Option(1, "--nats-cluster", min=1, max=5,
                                     help="NATS nodes: 3 runs a loopback cluster with streams replicated x3."),
    no_auth: bool = typer.Option(False, "--no-auth", help="NATS without per-service users and permissions."),
    only: str = typer.Option("", help="Comma-separated services to run (default: all)."),
) -> None:
    """Start nats-server and every service as supervised processes."""
    settings = Settings()
    names = [n for n in only.split(",") if n] or None
    try:
        services = supervisor.select_services(names)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    running = read_stack(settings)
    if running is None:
        _refuse_if_it_does_not_fit(settings, [s.role for s in services if s.role])
    if running is not None:
        console.print(f"[green]stack already running[/] (supervisor pid {running['supervisor_pid']}, {running['nats_url']})")
    elif detach:
        pid = supervisor.spawn_detached(settings, port or None, nats_cluster=nats_cluster, auth=not no_auth, only=names)
        console.print(f"supervisor started (pid {pid}); logs in {settings.logs_dir}")
    else:
        console.print("running the stack in the foreground; Ctrl-C stops it")
        supervisor.Supervisor(settings, services, port=port or None, nats_cluster=nats_cluster, auth=not no_auth).run_forever()
        return
    if not _wait_ready(settings, wait, {s.name for s in services}):
        console.print(f"[red]not every service became ready within {wait:.0f}s[/]; see {settings.logs_dir}")
        raise typer.Exit(1)
    status(json_out=False)


def _refuse_if_it_does_not_fit(settings: Settings, roles: list[str]) -> None:
    """Stop before starting anything when the roster's agents cannot fit this machine's
    memory (syndicate/capacity/plan.py), naming the biggest consumers."""
    if not roles or os.environ.get("SYNDICATE_ENGINE_SCRIPT"):
        return  # scripted engines load no model
    from shared.errors import ConfigError
    from shared.llm.roster import load_roster
    from syndicate.capacity.plan import make_plan, refusal

    try:
        plan = make_plan(load_roster(os.environ.get("SYNDICATE_ROSTER") or settings.roster), sysfs=Path("/"), ram=None,
                         bandwidth_gbps=None, state_dir=settings.state_dir, roles=roles, speed=False)
    except ConfigError as exc:  # a model file missing is the agents' own error to report
        console.print(f"[yellow]memory plan skipped:[/] {exc.message}")
        return
    if not plan.fits:
        console.print(f"[red]refusing to start:[/] {refusal(plan)}", soft_wrap=True)
        raise typer.Exit(1)


def _wait_ready(settings: Settings, wait_s: float, names: set[str]) -> bool:
    end = time.monotonic() + wait_s
    with console.status("waiting for services to become ready..."):
        while time.monotonic() < end:
            record = read_stack(settings)
            if record is not None:
                replies = asyncio.run(health_replies(cli_settings().nats_servers, wait_s=0.5))
                ready = {r.service for r in replies if r.state in ("ready", "degraded")}
                if names <= ready:
                    return True
            time.sleep(0.5)
    return False


def down() -> None:
    """Stop the local stack (services, then nats-server)."""
    settings = Settings()
    if supervisor.stop_stack(settings):
        console.print("[green]stack stopped[/]")
    else:
        console.print("no stack is running")


def status(json_out: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """One row per service: name, pid, state, pinned cores, model, queue depth, running/slots."""
    settings = Settings()
    record = read_stack(settings)
    conn = cli_settings()
    nats_url = conn.nats_url  # without credentials: safe to print
    replies = asyncio.run(health_replies(conn.nats_servers, wait_s=0.6))
    by_service: dict[str, list] = {}
    for r in replies:
        by_service.setdefault(r.service, []).append(r)
    expected = list((record or {}).get("services", {}))
    names = expected + sorted(set(by_service) - set(expected))
    rows = []
    for name in names:
        instances = by_service.get(name) or [None]
        for r in instances:
            sup = (record or {}).get("services", {}).get(name, {})
            rows.append({
                "service": name, "pid": r.pid if r else sup.get("pid"), "state": r.state if r else "down",
                "cpus": r.cpus if r else [], "threads": r.threads if r else None, "model": r.model if r else None,
                "queue_depth": r.queue_depth if r else 0, "running": r.running if r else 0,
                "restarts": sup.get("restarts", 0), "details": r.details if r else {},
            })
    if json_out:
        print(json.dumps({"nats_url": nats_url, "stack": bool(record), "auth": (record or {}).get("auth"),
                          "nats_nodes": (record or {}).get("nats_nodes", []), "services": rows}))
        return
    table = Table(title=f"syndicate @ {nats_url}" + ("" if record else " (no local stack)"), box=None, padding=(0, 1), header_style="bold",
                  pad_edge=False)
    for col, just in (("service", "left"), ("pid", "right"), ("state", "left"), ("cores", "left"), ("thr", "right"),
                      ("model", "left"), ("queue", "right"), ("run", "right"), ("rst", "right")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    notes: list[str] = []
    for row in rows:
        colour = {"ready": "green", "degraded": "yellow", "down": "red"}.get(row["state"], "white")
        table.add_row(
            row["service"], str(row["pid"] or "-"), f"[{colour}]{row['state']}[/]", _cpus(row["cpus"]),
            str(row["threads"] or "-"), row["model"] or "-", str(row["queue_depth"]), _run_cell(row),
            str(row["restarts"]),
        )
        details = ", ".join(f"{k}: {v}" for k, v in row["details"].items() if k in _NOTE_KEYS)
        if details:
            notes.append(f"[bold]{row['service']}[/] {details}")
    console.print(table)
    if not replies:
        console.print(f"[yellow]no service answered on {nats_url}[/]: start the stack with `syndicate up --detach` (or `make run`)")
    for line in notes:
        console.print(line, highlight=False)
    for url in dict.fromkeys(r.details["console"] for r in replies if r.service == "gateway" and r.details.get("console")):
        console.print(f"[bold]console:[/] {url}  (agents, tasks, traces, evolution runs in the browser)", highlight=False)
    for note in (record or {}).get("placement", {}).get("notes", []):
        console.print(f"[dim]placement: {note}[/]")


_NOTE_KEYS = ("isolation", "url", "classifier", "embedder", "collections", "tokens_per_s", "awaiting_review")


def _run_cell(row: dict) -> str:
    """Running requests, and the engine's batching slots when it has them ("2/4")."""
    slots = row["details"].get("slots")
    return f"{row['running']}/{slots}" if slots else str(row["running"])


def _cpus(cpus: list[int]) -> str:
    from shared.settings import format_cpus

    return format_cpus(cpus) if cpus else "-"
