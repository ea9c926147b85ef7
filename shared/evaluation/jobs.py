"""One evaluation job end to end, shared by the CLI and the evaluator service: connect to the
bus when the suite needs it (code-sandbox, agents), run, write the report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shared.evaluation.connection import BusClient
from shared.evaluation.executors import LocalUnsafeExecutor
from shared.evaluation.report import write_report
from shared.evaluation.results import SuiteResult
from shared.evaluation.runner import Progress, Runner, RunOptions
from shared.evaluation.settings import EvaluatorSettings
from shared.evaluation.suites import load_suite
from shared.settings import parse_cpus


class SandboxExecutor:
    """Programs to code-sandbox over the bus."""

    name = "code-sandbox"

    def __init__(self, bus: BusClient) -> None:
        self.bus = bus

    def __call__(self, req: Any) -> Any:
        return self.bus.exec(req)


def pin_to_placement(settings: EvaluatorSettings) -> list[int]:
    """Restrict this process to the cores the placement plan gave it (SYNDICATE_CPUS)."""
    cpus = parse_cpus(settings.cpus)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    return cpus


def run_job(
    settings: EvaluatorSettings, suite: str, models: list[str], options: RunOptions, out: Path | None,
    progress: Progress | None = None, bus: BusClient | None = None,
) -> tuple[SuiteResult, dict[str, Path]]:
    """Run one suite against the models and write the report into ``out`` (if given)."""
    kind = load_suite(suite, settings.eval_data_dir, options.suite_type).type
    needs_bus = options.through_agents or (kind == "code" and not options.unsafe_local_exec)
    own_bus = bus is None and needs_bus
    if own_bus:
        bus = BusClient(settings)
    try:
        run_program: Any = None
        if kind == "code":
            run_program = LocalUnsafeExecutor() if options.unsafe_local_exec else SandboxExecutor(bus)  # type: ignore[arg-type]
        cache_dir = (out / ".items") if out else settings.eval_dir / "items"
        runner = Runner(settings, options, cache_dir=cache_dir, progress=progress, run_program=run_program,
                        agents=bus if options.through_agents else None)
        result = runner.run(suite, models)
    finally:
        if own_bus and bus is not None:
            bus.close()
    paths = write_report(result, out) if out else {}
    return result, paths


def write_status(run_dir: Path, **fields: Any) -> None:
    """The remote job's status file (``syndicate eval runs`` reads it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / "status.json"
    old = json.loads(p.read_text()) if p.is_file() else {}
    (run_dir / "status.tmp").write_text(json.dumps({**old, **fields, "updated_at": time.time()}))
    (run_dir / "status.tmp").replace(p)


class StatusProgress:
    """Progress of a remote job, written to its status file (at most every ``every_s``)."""

    def __init__(self, run_dir: Path, every_s: float = 2.0) -> None:
        self.run_dir = run_dir
        self.every_s = every_s
        self.totals: dict[str, list[int]] = {}
        self.scores: dict[str, str] = {}
        self._last = 0.0

    def start(self, label: str, total: int, done: int) -> None:
        self.totals[label] = [done, total]
        self._write(force=True)

    def advance(self, label: str, score: str) -> None:
        self.totals[label][0] += 1
        self.scores[label] = score
        self._write()

    def finish(self, label: str) -> None:
        self._write(force=True)

    def _write(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            write_status(self.run_dir, done=sum(d for d, _ in self.totals.values()),
                         total=sum(t for _, t in self.totals.values()), scores=self.scores)


def run_remote(settings: EvaluatorSettings, req: Any) -> SuiteResult | None:
    """An EvalRunRequest from the bus: run it into ``<state>/eval/<run_id>/`` with a status file.

    A redelivered job (the service died mid-run) resumes from the run folder's item cache.
    """
    run_dir = settings.eval_dir / req.run_id
    write_status(run_dir, run_id=req.run_id, suite=req.suite, models=req.models, status="running",
                 report_dir=str(run_dir), started_at=time.time())
    options = RunOptions.model_validate({**req.options, "limit": req.limit})
    try:
        result, _ = run_job(settings, req.suite, req.models, options, run_dir, StatusProgress(run_dir))
    except Exception as exc:  # the job failed: say why in its status, do not redeliver forever
        write_status(run_dir, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return None
    write_status(run_dir, status="done", finished_at=time.time())
    return result
