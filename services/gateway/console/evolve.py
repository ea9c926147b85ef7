"""The console's adapter over evolution runs in the EVOLVE_BUCKET KV (shared/evolve/store.py
names the keys): runs are read as plain JSON records, so the pages depend on a few fields
only, and a record format that grows (islands, new verdicts) changes this file alone.

Per run the console shows score against samples (every evaluated program is a sample, in
the order it was recorded) for each island, the best program and its lineage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats

from shared import subjects

DEFAULT_ISLAND = "population"  # runs without islands: one population
WATCH_WAIT_S = 2.0  # how long the initial values of a watch may take before giving up


@dataclass(frozen=True)
class Sample:
    """One evaluated program: its place in the run's order of evaluation and its score."""

    n: int
    program_id: str
    island: str
    generation: int
    score: float | None
    verdict: str


@dataclass
class RunView:
    """What the run's page shows."""

    run_id: str
    name: str
    status: str
    generation: int
    generations_planned: int | None
    seed_score: float | None
    best_id: str
    best_score: float | None
    best_code: str
    error: str
    islands: dict[str, list[Sample]] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    updated_at: float = 0.0
    resets: dict[str, int] = field(default_factory=dict)  # island -> times it was restarted
    asked: int = 0  # island runs: candidates asked so far
    budget: int | None = None  # island runs: the samples budget
    phase: str = ""  # island runs: seeding, evolving, finishing, ended
    answered: int = 0
    valid: int = 0  # of the answered, how many ran and earned a first-stage score
    minutes: float | None = None  # island runs: the active-minutes budget
    active_min: float = 0.0
    final_validation: float | None = None

    @property
    def samples(self) -> int:
        return sum(len(s) for s in self.islands.values())

    @property
    def running(self) -> bool:
        return self.status not in ("done", "failed", "cancelled", "stopped")


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


NOT_EVALUATED = frozenset({"asked", "pending"})  # island runs: a job out, or written and not yet scored


def _island_name(p: dict[str, Any], has_islands: bool) -> str:
    island = p.get("island")
    if island is not None:
        return f"island {island}"
    return "seed & baselines" if has_islands else DEFAULT_ISLAND


def build_view(run: dict[str, Any], programs: dict[str, dict[str, Any]],
               island_records: dict[str, dict[str, Any]] | None = None) -> RunView:
    """A run's view from its head record, its program records and (runs with islands) its
    island records, all raw JSON objects.

    Samples are the evaluated programs in the order they were evaluated (finished, else
    recorded), so the chart grows to the right as results come in; a program still out or
    not yet scored is not a sample yet. An island's line is the running best of its own
    samples; its record adds how often it was reset (FunSearch restarts weak islands)."""
    spec = run.get("spec") or {}
    evaluated = [p for p in programs.values() if p.get("verdict") not in NOT_EVALUATED]
    has_islands = any(p.get("island") is not None for p in evaluated)
    ordered = sorted(evaluated, key=lambda p: (_float(p.get("finished_at")) or _float(p.get("created_at")) or 0.0,
                                               int(p.get("sample") or 0), str(p.get("program_id"))))
    islands: dict[str, list[Sample]] = {}
    for i, p in enumerate(ordered, start=1):
        name = _island_name(p, has_islands)
        islands.setdefault(name, []).append(Sample(
            n=i, program_id=str(p.get("program_id", "")), island=name,
            generation=int(p.get("generation") or 0), score=_float(p.get("score")), verdict=str(p.get("verdict", "")),
        ))
    resets = {f"island {rec['island']}": int(rec.get("epoch") or 0)
              for rec in (island_records or {}).values() if rec.get("island") is not None}
    best_id = str(run.get("final_id") or run.get("best_id") or "")
    error = run.get("error") or {}
    budget = spec.get("samples")
    return RunView(
        run_id=str(run.get("run_id", "")), name=str(spec.get("name", "")), status=str(run.get("status", "")),
        generation=int(run.get("generation") or 0),
        generations_planned=spec.get("generations") if spec.get("mode", "generations") == "generations" else None,
        seed_score=_float(run.get("seed_score")), best_id=best_id,
        best_score=_float((programs.get(best_id) or {}).get("score")) if run.get("final_id") else _float(run.get("best_score")),
        best_code=str((programs.get(best_id) or {}).get("code", "")),
        error=f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) and error else "",
        islands=dict(sorted(islands.items(), key=lambda kv: (not kv[0].startswith("seed"), kv[0]))),
        lineage=lineage(programs, best_id), updated_at=_float(run.get("updated_at")) or 0.0,
        resets=resets, asked=int(run.get("asked") or 0), budget=int(budget) if budget else None,
        phase=str(run.get("phase") or "") if spec.get("mode") == "islands" else "",
        answered=int(run.get("answered") or 0), valid=int(run.get("valid") or 0),
        minutes=_float(spec.get("minutes")), active_min=(_float(run.get("active_s")) or 0.0) / 60,
        final_validation=_float(run.get("final_validation")),
    )


def lineage(programs: dict[str, dict[str, Any]], best_id: str) -> list[dict[str, Any]]:
    """The best program, the program it was a mutation of (its first parent), and so on
    back to the seed."""
    chain: list[dict[str, Any]] = []
    pid: str | None = best_id
    while pid and pid in programs and all(c["program_id"] != pid for c in chain):
        p = programs[pid]
        chain.append({"program_id": pid, "generation": p.get("generation"), "sample": int(p.get("sample") or 0),
                      "island": p.get("island"), "score": _float(p.get("score")),
                      "verdict": p.get("verdict", ""), "parents": list(p.get("parents") or [])})
        pid = chain[-1]["parents"][0] if chain[-1]["parents"] else None
    return chain


class EvolveSource:
    """Reads runs from the bucket over one NATS connection (None: the bus is down)."""

    def __init__(self, nc: nats.NATS | None) -> None:
        self.nc = nc

    async def _bucket(self) -> Any:
        if self.nc is None:
            return None
        try:
            return await self.nc.jetstream().key_value(subjects.EVOLVE_BUCKET)
        except Exception:  # no run yet (the bucket is created by the first), or bus trouble
            return None

    async def _snapshot(self, kv: Any, keys: str) -> dict[str, dict[str, Any]]:
        """The current value of every key matching ``keys`` (one watch, stopped after the
        initial values)."""
        out: dict[str, dict[str, Any]] = {}
        watcher = await kv.watch(keys, ignore_deletes=True)
        try:
            while True:
                entry = await watcher.updates(timeout=WATCH_WAIT_S)
                if entry is None:
                    return out
                with contextlib.suppress(ValueError, TypeError):
                    out[entry.key] = json.loads(entry.value)
        except nats.errors.TimeoutError:
            return out
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def runs(self) -> list[dict[str, Any]]:
        """Every run's head record, newest first."""
        kv = await self._bucket()
        if kv is None:
            return []
        heads = await self._snapshot(kv, "*.run")
        return sorted(heads.values(), key=lambda r: _float(r.get("created_at")) or 0.0, reverse=True)

    async def run(self, run_id: str) -> RunView | None:
        """One run's view now (None: no such run)."""
        kv = await self._bucket()
        if kv is None:
            return None
        return _view(run_id, await self._snapshot(kv, f"{run_id}.>"))

    async def follow(self, run_id: str, every_s: float = 1.0) -> AsyncIterator[RunView]:
        """The run's view now and after each change (at most one per ``every_s``), until it
        ends (its last view included)."""
        kv = await self._bucket()
        if kv is None:
            return
        records: dict[str, dict[str, Any]] = {}
        watcher = await kv.watch(f"{run_id}.>", ignore_deletes=True)
        loop = asyncio.get_running_loop()
        loaded, dirty, sent_at = False, False, -every_s
        try:
            while True:
                wait = max(0.01, sent_at + every_s - loop.time()) if dirty and loaded else 30.0
                try:
                    entry = await watcher.updates(timeout=wait)
                except nats.errors.TimeoutError:
                    entry = None
                if entry is None:  # the end of the initial values, or a quiet spell
                    loaded = True
                else:
                    with contextlib.suppress(ValueError, TypeError):
                        records[entry.key] = json.loads(entry.value)
                        dirty = True
                if dirty and loaded and loop.time() >= sent_at + every_s:
                    dirty, sent_at = False, loop.time()
                    view = _view(run_id, records)
                    if view is not None:
                        yield view
                        if not view.running:
                            return
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


def _view(run_id: str, records: dict[str, dict[str, Any]]) -> RunView | None:
    run = records.get(f"{run_id}.run")
    if run is None:
        return None
    prog, isl = f"{run_id}.prog.", f"{run_id}.island."
    programs = {k[len(prog):]: v for k, v in records.items() if k.startswith(prog)}
    islands = {k: v for k, v in records.items() if k.startswith(isl)}
    return build_view(run, programs, islands)
