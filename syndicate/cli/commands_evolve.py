"""``syndicate evolve``: evolve a program (runs are owned by the router).

The command publishes a ``kind="evolve"`` task (the run id is its task id), then follows
the run's records in the EVOLVE_BUCKET KV — so it survives a router restart and can be
re-attached with ``--resume RUN_ID`` from any shell. Ctrl-C detaches; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from opentelemetry import trace
from rich.console import Console, Group
from rich.live import Live
from rich.syntax import Syntax
from rich.table import Column, Table
from rich.text import Text

from shared import subjects
from shared.contracts import (
    EvolveGeneration,
    EvolveIsland,
    EvolveRun,
    EvolveSpec,
    TaskSubmit,
    new_id,
)
from shared.errors import ConfigError, SyndicateError
from shared.evolve.report import write_report
from shared.evolve.spec import load_spec
from shared.evolve.store import RunStore, open_bucket
from syndicate.cli.connect import cli_settings, connected_broker

console = Console()
err_console = Console(stderr=True)
POLL_S = 1.0
CLAIM_WAIT_S = 60.0  # how long to wait for a router to create the run's record
CODER_COPIES = "coder-agent"  # --model value for the coder-agent copies (the spec's model name "")


def register(app: typer.Typer) -> None:
    app.command("evolve")(evolve)


def evolve(
    spec: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="SPEC file (TOML, see docs/evolve.md).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-n", min=1, help="Budget: candidates to ask (overrides the spec).")] = None,
    minutes: Annotated[float | None, typer.Option("--minutes", "-m", min=0.01, help="Budget: minutes of evolution (overrides the spec).")] = None,
    islands: Annotated[int | None, typer.Option("--islands", min=1, help="Islands (mode islands).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Jobs in flight (default: the coder-agents' slots).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="RNG seed of the run's choices (overrides rng_seed).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="islands (steady state, default) | generations (the generational loop).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Who writes candidates (repeatable; replaces the spec's models): coder-agent (the copies, through the JOBS stream) or a served model's name.")] = None,
    generations: Annotated[int | None, typer.Option("--generations", "-g", min=1, help="Generations (mode generations; overrides the spec).")] = None,
    population: Annotated[int | None, typer.Option("--population", "-p", min=1, help="Survivors per generation (mode generations).")] = None,
    children: Annotated[int | None, typer.Option("--children", min=1, help="Candidates per generation (mode generations; default: population).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Re-attach to run RUN_ID; continue it if it stopped (or extend it with --samples / --minutes / --generations).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="End with one JSON object (best_program, best_score, samples, valid_fraction, minutes, test_*, ...).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: <state dir>/evolve/<run id>).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Print the run id and return at once.")] = False,
    list_runs: Annotated[bool, typer.Option("--list", help="List the runs kept in the bucket.")] = False,
) -> None:
    """Evolve a program: coder-agents write new versions, code-sandbox scores them, islands keep the best."""
    if list_runs:
        _run(_list())
        return
    if (spec is None) == (resume is None):
        raise typer.BadParameter("give a SPEC file, or --resume RUN_ID")
    if mode is not None and mode not in ("islands", "generations"):
        raise typer.BadParameter("--mode is islands or generations")
    overrides: dict[str, Any] = {k: v for k, v in {
        "generations": generations, "population": population, "children": children, "samples": samples,
        "minutes": minutes, "concurrency": concurrency, "rng_seed": seed, "mode": mode}.items() if v is not None}
    if model:
        overrides["models"] = [{"name": "" if m == CODER_COPIES else m} for m in model]
    spec_model: EvolveSpec | None = None
    if spec is not None:
        try:
            spec_model = with_overrides(load_spec(spec), overrides, islands)
        except (ConfigError, ValueError) as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
    out_data = _run(_evolve(spec_model, resume, overrides, json_out=json_out, out=out, detach=detach))
    if detach:
        print(out_data["run_id"])
        return
    if json_out:
        print(json.dumps(out_data))
    else:
        _print_report(out_data)
    if out_data.get("status") != "done":
        raise typer.Exit(1)


def with_overrides(spec: EvolveSpec, overrides: dict[str, Any], islands: int | None = None) -> EvolveSpec:
    """The spec with the command line's values (validated again)."""
    data = spec.model_dump()
    data.update(overrides)
    if "minutes" in overrides and "samples" not in overrides:
        data["samples"] = None  # --minutes alone: the time is the budget
    if "samples" in overrides and "minutes" not in overrides:
        data["minutes"] = None  # --samples alone: the count is the budget
    if islands is not None:
        data["database"] = {**data["database"], "islands": islands}
    return EvolveSpec.model_validate(data)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except SyndicateError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc


async def _evolve(spec: EvolveSpec | None, resume: str | None, overrides: dict[str, Any], *, json_out: bool,
                  out: Path | None, detach: bool) -> dict[str, Any]:
    settings = cli_settings()
    tracer = trace.get_tracer("syndicate.cli")
    async with connected_broker(settings) as broker:
        store = RunStore(await open_bucket(broker.connection.jetstream()))
        if resume is not None:
            run = await store.get_run(resume)
            if run is None:
                raise ConfigError(f"no evolution run {resume} (unknown, or past the retention period)")
            spec = run.spec.model_copy(update={k: v for k, v in overrides.items()
                                               if k in ("generations", "samples", "minutes")})
            run_id, msg_id = resume, f"{resume}.resume.{time.time_ns()}"
        else:
            assert spec is not None
            run_id = new_id("evo-")
            msg_id = run_id
        task = TaskSubmit(task_id=run_id, kind="evolve", text=spec.task, evolve=spec, timeout_s=86_400)
        with tracer.start_as_current_span("syndicate evolve", attributes={"evolve.run_id": run_id}):
            await broker.publish(task, subjects.TASK_SUBMIT, stream=subjects.TASKS_STREAM, headers={"Nats-Msg-Id": msg_id})
        if detach:
            return {"run_id": run_id}
        if not json_out:
            err_console.print(f"[dim]evolution run {run_id} · follow again with: syndicate evolve --resume {run_id}[/]")
        try:
            run = await _follow(store, run_id, live=not json_out)
            if not json_out:
                err_console.print()  # the live view's last line ends before the report starts
        except (KeyboardInterrupt, asyncio.CancelledError):
            err_console.print(f"\n[yellow]detached[/]: the run goes on in the router · syndicate evolve --resume {run_id}")
            raise typer.Exit(130) from None
        gens = await store.generations(run_id, run.generation + 1) if run.spec.mode == "generations" else []
        islands = await store.islands(run_id, run.spec.database.islands) if run.spec.mode == "islands" else []
        programs = await store.programs(run_id)
    report_dir = out or settings.state_dir / "evolve" / run_id
    return write_report(run, gens, programs, report_dir, islands)


async def _follow(store: RunStore, run_id: str, *, live: bool) -> EvolveRun:
    """Poll the run's records until it ends, rendering progress when ``live``."""
    started = time.monotonic()
    run: EvolveRun | None = None
    history: list[EvolveGeneration] = []
    with Live(console=err_console, refresh_per_second=4, transient=False) if live else _Quiet() as display:
        while True:
            run = await store.get_run(run_id)
            if run is None:
                if time.monotonic() - started > CLAIM_WAIT_S:
                    raise ConfigError(f"no router took run {run_id} within {CLAIM_WAIT_S:.0f}s (is the stack up?)")
                display.update(Text(f"waiting for a router to take run {run_id} ..."))
                await asyncio.sleep(POLL_S)
                continue
            if run.spec.mode == "islands":
                islands = await store.islands(run_id, run.spec.database.islands)
                display.update(_island_progress(run, islands))
            else:
                history = [g for g in history if g.n <= run.generation]
                for n in range(len(history) + 1, run.generation + 1):
                    g = await store.get_gen(run_id, n)
                    if g is not None:
                        history.append(g)
                current = await store.get_gen(run_id, run.generation + 1) if run.status == "running" else None
                display.update(_progress(run, history, current, time.monotonic() - started))
            if run.status != "running":
                return run
            await asyncio.sleep(POLL_S)


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, _: object) -> None:
        return None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _progress(run: EvolveRun, history: list[EvolveGeneration], current: EvolveGeneration | None, elapsed: float) -> Group:
    seed, best = run.seed_score, run.best_score
    gain = ""
    if seed is not None and best is not None:
        gain = f"{best - seed:+.6g}" + (f" ({(best - seed) / abs(seed):+.1%})" if seed else "")
    head = Text.assemble(
        ("evolve ", "bold"), (run.spec.name, "cyan"), f" · {run.run_id} · ", (run.status, "green" if run.status in ("running", "done") else "red"),
        f" · generation {run.generation}/{run.spec.generations} · seed {_fmt(seed)} · best {_fmt(best)} ",
        (gain, "bold green" if seed is not None and best is not None and best > seed else ""), f" · {elapsed:.0f}s",
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("gen", "best", "best id", "scored", "no score", "trace"):
        table.add_column(col)
    for g in history[-12:]:
        table.add_row(str(g.n), _fmt(g.best_score), g.best_id, str(g.scored), str(g.failed), (g.trace_ids or [""])[-1][:16])
    if current is not None:
        pending = len(current.jobs) - current.scored - current.failed
        table.add_row(str(current.n), "…", "", str(current.scored), str(current.failed),
                      f"{pending} of {len(current.jobs)} candidates pending", style="dim")
    parts: list[Any] = [head, table]
    if run.error:
        parts.append(Text(f"{run.error.code}: {run.error.message}", style="red"))
    return Group(*parts)


def _island_progress(run: EvolveRun, islands: list[EvolveIsland]) -> Group:
    """Live view of a steady-state run: budget, valid fraction, and each island's bests."""
    spec = run.spec
    budget = spec.sample_budget
    minutes = run.active_s / 60
    valid = f"{run.valid / run.answered:.0%}" if run.answered else "-"
    rate = f"{run.answered / (minutes / 60):.0f}/h" if minutes > 0.5 else "-"
    seed, best = run.seed_score, run.best_score
    gain = f"{best - seed:+.6g}" if seed is not None and best is not None else ""
    head = Text.assemble(
        ("evolve ", "bold"), (spec.name, "cyan"), f" · {run.run_id} · ",
        (run.status, "green" if run.status in ("running", "done") else "red"), f" · {run.phase}",
        f" · samples {run.asked}" + (f"/{budget}" if budget else "") + f" ({run.answered} back, {valid} valid, {rate})",
        f" · {minutes:.1f}" + (f"/{spec.minutes:g}" if spec.minutes else "") + " min",
        f" · seed {_fmt(seed)} · best {_fmt(best)} ", (gain, "bold green" if gain.startswith("+") and gain != "+0" else ""),
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("island", "best train", "best validation", "best id", "clusters", "programs", "samples", "valid", "resets"):
        table.add_column(col)
    for isl in islands:
        table.add_row(str(isl.island), _fmt(isl.best_score), _fmt(isl.best_validation), isl.best_id,
                      str(len(isl.clusters)), str(sum(len(v) for v in isl.clusters.values())), str(isl.samples),
                      str(isl.valid), str(isl.epoch))
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(run.verdicts.items(), key=lambda kv: -kv[1]))
    parts: list[Any] = [head, table, Text(f"verdicts: {verdicts or '-'} · final (best validation): "
                                          f"{run.final_id or '-'} {_fmt(run.final_validation)}", style="dim")]
    if run.error:
        parts.append(Text(f"{run.error.code}: {run.error.message}", style="red"))
    return Group(*parts)


def _print_report(data: dict[str, Any]) -> None:
    if data.get("mode") == "islands":
        _print_island_report(data)
        return
    colour = "green" if data["status"] == "done" else "red"
    console.rule(f"[{colour}]{data['status']}[/] · evolution run {data['run_id']} ({data['name']})")
    if data.get("error"):
        console.print(f"[red]{data['error']['code']}[/]: {data['error']['message']}")
    console.print(f"seed score {_fmt(data['seed_score'])} → best score {_fmt(data['best_score'])}"
                  f" (improvement {_fmt(data['improvement'])}) after {data['generations']} generations, "
                  f"{data['candidates']} candidates; verdicts {data['verdicts']}")
    if data.get("best_program"):
        console.print(f"best program ({data['best_id']}):")
        console.print(Syntax(data["best_program"], "python", line_numbers=False))
    chain = " ← ".join(f"{p['program_id']} ({_fmt(p['score'])})" for p in data["lineage"])
    console.print(f"lineage of the winner: {chain}")
    curve = ", ".join(f"g{p['generation']}: {_fmt(p['best_score'])}" for p in data["curve"])
    console.print(f"score curve: {curve}")
    for path_key, label in (("curve_png", "curve"), ("best_path", "best program"), ("report_path", "report")):
        if data.get(path_key):
            console.print(f"[dim]{label}: {data[path_key]}[/]")
    traces = "; ".join(f"g{n}: {', '.join(ids)}" for n, ids in data["traces"].items() if ids)
    if traces:
        console.print(f"[dim]traces (syndicate trace <id>): {traces}[/]")


def _print_island_report(data: dict[str, Any]) -> None:
    colour = "green" if data["status"] == "done" else "red"
    console.rule(f"[{colour}]{data['status']}[/] · evolution run {data['run_id']} ({data['name']})")
    if data.get("error"):
        console.print(f"[red]{data['error']['code']}[/]: {data['error']['message']}")
    console.print(f"{data['samples']} samples in {data['minutes']} min ({data['samples_per_hour'] or '-'}/h), "
                  f"valid {data['valid_fraction']}; verdicts {data['verdicts']}")
    console.print(f"seed {_fmt(data['seed_score'])} → final program {data['best_id']}: training {_fmt(data['best_score'])}, "
                  f"validation {_fmt(data['best_validation'])} (best training: {data['best_train_id']} "
                  f"{_fmt(data['best_train_score'])})")
    table = Table("island", "best train", "best validation", "best id", "clusters", "samples", "valid", "resets")
    for i in data["islands"]:
        table.add_row(str(i["island"]), _fmt(i["best_score"]), _fmt(i["best_validation"]), i["best_id"],
                      str(i["clusters"]), str(i["samples"]), str(i["valid"]), str(i["resets"]))
    console.print(table)
    metric = data.get("metric")
    if data.get("test") and metric:
        tests = {k: v for k, v in data.items() if k.endswith(f"_{metric}") and isinstance(v, int | float)}
        console.print("held-out test: " + ", ".join(f"{k} {_fmt(v)}" for k, v in tests.items()))
    if data.get("best_program"):
        console.print(f"final program ({data['best_id']}):")
        console.print(Syntax(data["best_program"], "python", line_numbers=False))
    chain = " ← ".join(f"{p['program_id']} ({_fmt(p['score'])})" for p in data["lineage"])
    console.print(f"lineage of the winner: {chain}")
    for path_key, label in (("curve_png", "score against samples"), ("best_path", "best program"), ("report_path", "report")):
        if data.get(path_key):
            console.print(f"[dim]{label}: {data[path_key]}[/]")


async def _list() -> None:
    async with connected_broker(cli_settings()) as broker:
        kv = await open_bucket(broker.connection.jetstream(), create=False)
        runs = await RunStore(kv).runs() if kv is not None else []
    table = Table("name", "mode", "status", "progress", "seed", "best", "owner")
    table.columns.insert(0, Column("run", no_wrap=True, min_width=16))
    for r in runs:
        if r.spec.mode == "islands":
            budget = r.spec.sample_budget
            progress = f"{r.asked}" + (f"/{budget}" if budget else "") + f" samples, {r.active_s / 60:.1f} min"
        else:
            progress = f"generation {r.generation}/{r.spec.generations}"
        table.add_row(r.run_id, r.spec.name, r.spec.mode, r.status, progress, _fmt(r.seed_score), _fmt(r.best_score),
                      r.owner or "-")
    console.print(table)
