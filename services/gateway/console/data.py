"""The console's read model: what its pages show, from what the stack already records.

- agents: the instances' HealthReplies (model, cores, threads, slots, queue, tok/s) and
  the local supervisor's record ``<state_dir>/stack.json`` (restarts; services that stopped
  answering show as down). The record is read as a file: services import no ``syndicate``.
- tasks: summaries of ``TaskState`` records of the task-state KV (read as plain JSON, so
  statuses and fields newer than this gateway still show).
- traces: the local trace store (``shared.telemetry.read_trace``) shaped as a waterfall by
  ``shared.trace_view``, as ``syndicate trace`` does.
- the study: the newest ``report.json`` of ``syndicate eval study`` (the one this state dir
  recorded last, or any in the configured folders).
Evolution runs have their own adapter (evolve.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import registry
from shared.contracts import FINAL_STATUSES, HealthReply
from shared.settings import format_cpus
from shared.telemetry import read_trace
from shared.trace_view import WaterfallRow, waterfall, without_create_spans

TEXT_PREVIEW = 160  # characters of a task's text in the list


@dataclass(frozen=True)
class AgentRow:
    """One instance of a service (or a service the supervisor runs that did not answer)."""

    service: str
    instance: str
    pid: int | None
    state: str  # ready, degraded, starting, stopping, or down
    model: str
    quant: str
    cores: str
    threads: int | None
    slots_busy: int
    slots_total: int | None
    queue_depth: int
    tokens_per_s: float | None
    restarts: int | None
    uptime: str  # coarse ("3 min"): the table changes only when something real does
    note: str = ""
    waiting: int | None = None  # its JetStream queue: tasks/jobs no copy has taken yet


def read_stack_record(state_dir: Path) -> dict[str, Any] | None:
    """The local supervisor's record of the stack (None without a live supervisor)."""
    try:
        record = json.loads((state_dir / "stack.json").read_text())
        pid = int(record.get("supervisor_pid") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return record


NOTE_KEYS = ("isolation", "url", "classifier", "embedder")


def agent_rows(replies: list[HealthReply], record: dict[str, Any] | None,
               waiting: dict[str, int] | None = None) -> list[AgentRow]:
    """One row per answering instance, in the registry's order of services, plus a
    ``down`` row for each service the supervisor runs that did not answer. ``waiting``:
    work on the bus each service's copies have not taken yet (JetStream)."""
    waiting = waiting or {}
    supervised: dict[str, Any] = (record or {}).get("services") or {}
    order = {name: i for i, name in enumerate([*[s.name for s in registry.SERVICES], *supervised])}
    rows: list[AgentRow] = []
    for r in sorted(replies, key=lambda r: (order.get(r.service, len(order)), r.service, r.instance)):
        d = r.details
        slots = d.get("slots")
        rate = d.get("tokens_per_s")
        note = ", ".join(f"{k} {d[k]}" for k in NOTE_KEYS if d.get(k))
        rows.append(AgentRow(
            service=r.service, instance=r.instance, pid=r.pid, state=r.state, model=r.model or "",
            quant=str((d.get("model_file") or {}).get("quant") or ""), cores=format_cpus(r.cpus) if r.cpus else "",
            threads=r.threads, slots_busy=r.running, slots_total=int(slots) if slots else None,
            queue_depth=r.queue_depth, tokens_per_s=float(rate) if rate is not None else None,
            restarts=_restarts(supervised, r.service), uptime=uptime(d.get("uptime_s")), note=note,
            waiting=waiting.get(r.service),
        ))
    answered = {r.service for r in replies}
    for name, sup in supervised.items():
        if name not in answered:
            cpus = sup.get("cpus") or []
            rows.append(AgentRow(
                service=name, instance="", pid=sup.get("pid"), state="down", model="", quant="",
                cores=format_cpus(cpus) if cpus else "", threads=None, slots_busy=0, slots_total=None,
                queue_depth=0, tokens_per_s=None, restarts=_restarts(supervised, name), uptime="",
                waiting=waiting.get(name),
            ))
    return rows


def uptime(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    return "<1 min" if s < 60 else age(time.time() - s)


def _restarts(supervised: dict[str, Any], service: str) -> int | None:
    sup = supervised.get(service)
    return int(sup.get("restarts", 0)) if isinstance(sup, dict) else None


@dataclass
class TaskSummary:
    """A task as the list shows it."""

    task_id: str
    status: str
    kind: str
    agents: list[str]
    text: str
    submitted_at: float
    updated_at: float
    trace_id: str = ""
    error: str = ""
    unverified: bool = False  # done, but no check the task stated stands behind the answer

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def summarize(raw: bytes | str) -> TaskSummary | None:
    """A TaskState record (JSON) as a summary; None for a record that is not one."""
    try:
        state = json.loads(raw)
        task = state["task"]
        result = state.get("result") or {}
        error = (result.get("error") or {}).get("code", "") if isinstance(result, dict) else ""
        agents = list(state.get("route") or ([task["agent"]] if task.get("agent") else []))
        text = str(task.get("text", ""))
        return TaskSummary(
            task_id=str(task["task_id"]), status=str(state.get("status", "queued")), kind=str(task.get("kind", "")),
            agents=[str(a) for a in agents], text=text[:TEXT_PREVIEW] + ("…" if len(text) > TEXT_PREVIEW else ""),
            submitted_at=float(task.get("submitted_at") or 0.0), updated_at=float(state.get("updated_at") or 0.0),
            trace_id=str(state.get("trace_id") or ""), error=str(error or ""),
            unverified=bool(result.get("unverified")) if isinstance(result, dict) else False,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class TraceView:
    """A task's trace for the page: the waterfall rows, or why there are none."""

    trace_id: str
    rows: list[WaterfallRow] = field(default_factory=list)
    total_s: float = 0.0
    services: list[str] = field(default_factory=list)
    exported_to: str | None = None  # the OTLP endpoint when spans leave the local store


def load_trace(traces_dir: Path, trace_id: str, otlp_endpoint: str | None) -> TraceView:
    """The task's spans from the local trace store (blocking file reads: call it in a
    thread). With OTLP export there is nothing local; the page links to Jaeger instead."""
    view = TraceView(trace_id=trace_id, exported_to=otlp_endpoint)
    if not trace_id:
        return view
    spans = without_create_spans(read_trace(traces_dir, trace_id))
    view.rows, view.total_s = waterfall(spans)
    view.services = sorted({r.service for r in view.rows})
    return view


@dataclass
class StudyView:
    """The latest quantization study: its rows as report.json holds them, its plot."""

    folder: Path
    finished_at: float | None
    rows: list[dict[str, Any]]
    note: str
    plot: Path | None
    options: dict[str, Any]


def study_candidates(state_dir: Path, dirs: list[Path]) -> list[Path]:
    """Report folders to consider: the one ``syndicate eval study`` recorded last in this
    state dir, then the configured folders (or the default ones) and their sub-folders."""
    out: list[Path] = []
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        out.append(Path(json.loads((state_dir / "study-latest.json").read_text())["out"]))
    for d in dirs or [state_dir / "study", Path.cwd() / "study", Path.cwd() / "docs" / "study"]:
        out.append(d)
        with contextlib.suppress(OSError):
            out.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))
    return out


def latest_study(state_dir: Path, dirs: list[Path]) -> StudyView | None:
    """The newest readable study report among the candidates (by its ``finished_at``, else
    the file's modification time); None when there is none."""
    best: tuple[float, StudyView] | None = None
    seen: set[Path] = set()
    for folder in study_candidates(state_dir, dirs):
        report = folder / "report.json"
        if folder in seen or not report.is_file():
            continue
        seen.add(folder)
        try:
            data = json.loads(report.read_text())
            rows = [r for r in data["rows"] if isinstance(r, dict)]
            meta = data.get("study") or {}
            finished = meta.get("finished_at")
            when = float(finished) if finished else report.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        plot = folder / "tradeoff.png"
        view = StudyView(folder=folder, finished_at=float(finished) if finished else None, rows=rows,
                         note=str(data.get("reference_note") or ""), plot=plot if plot.is_file() else None,
                         options=meta.get("options") or {})
        if best is None or when > best[0]:
            best = (when, view)
    return best[1] if best else None


def study_cells(row: dict[str, Any]) -> dict[str, str]:
    """One study row's table cells (as report.md prints them)."""

    def q(phase: str, key: str, nd: int = 2) -> str:
        v = (row.get(phase) or {}).get(key)
        return "–" if v is None else f"{float(v):.{nd}f}"

    speed = row.get("speed") or {}
    ref = bool(row.get("reference"))
    return {
        "label": str(row.get("label", "")) + (" (reference)" if ref else ""),
        "file_mb": f"{row['size_bytes'] / 1e6:.0f}" if row.get("size_bytes") else "–",
        "rss_mb": f"{speed['peak_rss_bytes'] / 1e6:.0f}" if speed.get("peak_rss_bytes") else "–",
        "humaneval": q("humaneval", "pass@1"), "gsm8k": q("gsm8k", "accuracy"), "ppl": q("text", "ppl"),
        "kld": "ref" if ref else q("text", "kld_mean", 3), "same_top": "ref" if ref else q("text", "same_top"),
        "prompt_tps": f"{speed['prompt_tok_s']:.1f}" if speed.get("prompt_tok_s") else "–",
        "gen_tps": f"{speed['gen_tok_s']:.1f}" if speed.get("gen_tok_s") else "–",
    }


def age(ts: float, now: float | None = None) -> str:
    """'4 s', '3 min', '2 h', '5 d' since ``ts`` (epoch seconds)."""
    if not ts:
        return ""
    s = max(0.0, (now or time.time()) - ts)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} s"
