"""``syndicate plan``: what fits my server (syndicate/capacity/plan.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.errors import SyndicateError

console = Console(width=max(Console().width, 140))  # the table is wide


def _gb(n: int | None) -> str:
    return f"{n / 1e9:.2f}" if n else "–"


def plan(
    roster: Annotated[Path | None, typer.Option(help="Roster file (default: SYNDICATE_ROSTER or infra/models.toml)")] = None,
    sysfs: Annotated[Path, typer.Option(help="The machine's sysfs tree (a recorded one for a target server)")] = Path("/"),
    ram: Annotated[str | None, typer.Option(help="Memory size, e.g. 512G (default: the machine's MemTotal)")] = None,
    bandwidth: Annotated[float | None, typer.Option(help="Memory bandwidth in GB/s of the whole machine "
                                                        "(default here: a short probe on each agent's cores)")] = None,
    headroom: Annotated[float, typer.Option(help="Share of RAM kept free")] = 0.10,
    fresh_probe: Annotated[bool, typer.Option("--fresh-probe", help="Probe this machine again (cached per machine)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Per agent: memory (weights, KV cache, compute, runtime) and expected tok/s; does it fit?
    Exits 1 when the roster does not fit."""
    from shared.llm.roster import load_roster
    from shared.settings import Settings
    from syndicate.capacity.plan import make_plan, parse_size, refusal
    from syndicate.stack_record import read_stack

    settings = Settings()
    try:
        r = load_roster(roster)
        record = read_stack(settings) if sysfs.resolve() == Path("/") else None
        pids = {name: s["pid"] for name, s in (record or {}).get("services", {}).items() if s.get("pid")}
        result = make_plan(r, sysfs=sysfs, ram=parse_size(ram) if ram else None, bandwidth_gbps=bandwidth,
                           state_dir=settings.state_dir, headroom=headroom, live_pids=pids, fresh_probe=fresh_probe)
    except SyndicateError as exc:
        console.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        _print(result, r.source)
    if not result.fits:
        if not as_json:
            console.print(f"[red]does not fit:[/] {refusal(result)}", soft_wrap=True)
        raise typer.Exit(1)


def _print(result: object, source: object) -> None:
    from syndicate.capacity.plan import CapacityPlan

    assert isinstance(result, CapacityPlan)
    m = result.machine
    t = Table(title=f"{source} on {m['sysfs']} — {m['ram_bytes'] / 2**30:.0f} GiB RAM, {m['cores']} cores, "
                    f"bandwidth: {'probe' if m['bandwidth_gbps'] is None else str(m['bandwidth_gbps']) + ' GB/s'}",
              box=None, header_style="bold", pad_edge=False)
    cols = ("role", "model", "quant", "cores", "weights", "repack", "KV", "compute", "runtime", "total",
            "tok/s", "RSS now", "tok/s last")
    for c in cols:
        t.add_column(c, justify="left" if c in ("role", "model", "quant") else "right", no_wrap=True)
    for role in result.biggest:
        a = result.agents[role]
        mm, meas = a.memory, a.measured
        t.add_row(role, a.model + ("" if a.file_exists else " †"), a.quant, f"{a.cores}/{a.threads}t",
                  _gb(mm.weights), _gb(mm.repacked), _gb(mm.kv), _gb(mm.compute), _gb(mm.runtime + mm.draft),
                  _gb(a.memory_bytes), f"{a.expected_tok_s:.3g}" if a.expected_tok_s else "–",
                  _gb(meas.get("rss_now_bytes") or meas.get("rss_bytes")),
                  f"{meas['gen_tok_s_alone']:.1f}" if meas.get("gen_tok_s_alone") else
                  (f"{meas['gen_tok_s']:.1f}*" if meas.get("gen_tok_s") else "–"))
    console.print(t)
    console.print("[dim]GB (10^9 bytes); tok/s: one request's generation rate on the memory-bandwidth roofline; "
                  "RSS now / tok/s last: what the running agent uses and measured last"
                  + ("; † sizes from the roster (no file yet)" if not all(a.file_exists for a in result.agents.values())
                     else "") + "[/]")
    verdict = "[green]fits[/]" if result.fits else "[red]does not fit[/]"
    console.print(f"agents + services ({_gb(result.services_bytes)} GB) = {_gb(result.total_bytes)} GB of "
                  f"{_gb(result.budget_bytes)} GB ({m['headroom']:.0%} of RAM kept free): {verdict}")
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
    loads = [a.probe_loadavg for a in result.agents.values() if a.probe_loadavg is not None]
    if loads:
        console.print(f"[dim]bandwidth probed with a load average up to {max(loads):.1f} "
                      "(cached; --fresh-probe measures again)[/]")
    if any(a.measured.get("gen_tok_s") and not a.measured.get("gen_tok_s_alone") for a in result.agents.values()):
        console.print("[dim]* measured while other requests shared the batch[/]")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
