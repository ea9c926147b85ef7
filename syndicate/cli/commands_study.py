"""``syndicate eval study``: the quantization study as one command (shared/evaluation/study.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.errors import SyndicateError
from syndicate.cli.commands_eval import RichProgress, _settings, err, eval_app


class _Both:
    """Progress to the terminal and to OUT/status.json (a background run is watched there)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def start(self, label: str, total: int, done: int) -> None:
        for s in self.sinks:
            s.start(label, total, done)

    def advance(self, label: str, score: str) -> None:
        for s in self.sinks:
            s.advance(label, score)

    def finish(self, label: str) -> None:
        for s in self.sinks:
            s.finish(label)


@eval_app.command("study")
def study_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder (report.md, report.json, tradeoff.png)")],
    quick: Annotated[bool, typer.Option("--quick", help="HumanEval 80, GSM8K 50, 8 text chunks (else 164/150/24)")] = False,
    only: Annotated[str, typer.Option(help="Comma-separated phases: quantize,humaneval,gsm8k,text,speed")] = "",
    small: Annotated[str | None, typer.Option(help="The smaller model's GGUF (default: the roster's 0.5B)")] = None,
    large: Annotated[str | None, typer.Option(help="The bigger model's GGUF, also the KLD reference (default: the 1.5B)")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads for every model and phase (default: all cores this may use)")] = None,
    limit: Annotated[int | None, typer.Option(help="Cap every suite at N items (a trial run)")] = None,
    max_tokens: Annotated[int, typer.Option(help="Generation limit per HumanEval / GSM8K answer")] = 512,
    fresh_speed: Annotated[bool, typer.Option("--fresh-speed", help="Re-measure speed and RSS even when cached")] = False,
    unsafe_local_exec: Annotated[bool, typer.Option("--unsafe-local-exec", hidden=True,
                                                    help="Run generated programs WITHOUT code-sandbox")] = False,
) -> None:
    """Bigger model quantized harder, or smaller kept precise? Quality, speed and memory of
    each model x quant on the same run; resumes after an interruption."""
    from shared.evaluation.connection import BusClient
    from shared.evaluation.executors import LocalUnsafeExecutor
    from shared.evaluation.jobs import (
        SandboxExecutor,
        StatusProgress,
        pin_to_placement,
        write_status,
    )
    from shared.evaluation.study import PHASES, Study, StudyOptions
    from shared.evaluation.study_report import write

    settings = _settings()
    options = StudyOptions(quick=quick, only=[p.strip() for p in only.split(",") if p.strip()] or list(PHASES),
                           small=small, large=large, threads=threads, limit=limit, fresh_speed=fresh_speed, max_tokens=max_tokens,
                           unsafe_local_exec=unsafe_local_exec)
    pin_to_placement(settings)
    started = time.time()
    bus = None
    try:
        if "humaneval" in options.only and not unsafe_local_exec:
            bus = BusClient(settings, name="cli")
        run_program = LocalUnsafeExecutor() if unsafe_local_exec else SandboxExecutor(bus) if bus else None
        write_status(out_dir, status="running", phases=options.only, started_at=started)
        with RichProgress(err) as bars:
            study = Study(settings, options, out_dir, progress=_Both(bars, StatusProgress(out_dir)),
                          say=lambda s: err.print(s, highlight=False), run_program=run_program)
            result = study.run()
        paths = write(result, out_dir)
    except SyndicateError as exc:
        write_status(out_dir, status="failed", error=f"{exc.code}: {exc.message}")
        err.print(f"[red]{exc.code}:[/] {exc.message}")
        if exc.code == "bus_error":
            err.print("HumanEval programs run in code-sandbox: start it with `syndicate up --only code-sandbox --detach`")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        write_status(out_dir, status="interrupted")
        err.print("[yellow]interrupted: finished items are cached; run the same command again to resume[/]")
        raise typer.Exit(130) from None
    finally:
        if bus is not None:
            bus.close()
    write_status(out_dir, status="done", finished_at=time.time())
    _record_latest(settings.state_dir, out_dir)
    sys.stdout.write(paths["md"].read_text())
    for kind, p in paths.items():
        err.print(f"{kind}: {p}")
    err.print(f"took {time.time() - started:.0f}s")


def _record_latest(state_dir: Path, out_dir: Path) -> None:
    """Tell the gateway's console (its Study page) where the latest study is."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "study-latest.json").write_text(json.dumps({"out": str(out_dir.resolve()), "at": time.time()}))
    except OSError as exc:
        err.print(f"[yellow]could not record the study for the console:[/] {exc}")


def register(app: typer.Typer) -> None:
    """Nothing to add: importing this module adds ``study`` to ``syndicate eval``."""
