"""HTML for the console: Jinja2 templates (autoescaped: task texts, model output and code
are untrusted) and the geometry of its two drawings, the trace waterfall and the score
curve, drawn as inline SVG (no script, no inline styles: the pages' CSP forbids both)."""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from services.gateway.console.data import AgentRow, TaskSummary, TraceView, age
from services.gateway.console.evolve import RunView
from shared.trace_view import WaterfallRow

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _clock(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _num(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(age=age, clock=_clock, num=_num)
    return env


ENV = make_env()


def render(template: str, **ctx: Any) -> str:
    return ENV.get_template(template).render(**ctx)


def agents_html(rows: list[AgentRow]) -> str:
    return render("agents_rows.html", rows=rows)


def task_row_html(task: TaskSummary) -> str:
    return render("task_row.html", t=task)


def tokens_html(text: str) -> str:
    """Streamed text for a ``beforeend`` swap: escaped, newlines as character references (an
    SSE data line cannot hold a bare newline, and the swap must keep them)."""
    return html.escape(text, quote=False).replace("\r", "").replace("\n", "&#10;")


@dataclass(frozen=True)
class Bar:
    """One waterfall row's bar, in a 0..1000 wide timeline."""

    row: WaterfallRow
    x: float
    width: float
    colour: str  # the service's colour


def waterfall_bars(view: TraceView) -> list[Bar]:
    total = view.total_s or 1e-9
    colour = {svc: PALETTE[i % len(PALETTE)] for i, svc in enumerate(view.services)}
    out = []
    for r in view.rows:
        x = min(999.0, r.start_s / total * 1000)
        out.append(Bar(r, round(x, 1), round(max(2.0, min(1000 - x, r.duration_s / total * 1000)), 1), colour[r.service]))
    return out


@dataclass(frozen=True)
class Series:
    """One island in the score chart: its samples as dots, its best so far as a step line."""

    island: str
    colour: str
    dots: list[tuple[float, float, str]]  # x, y, title
    line: str  # SVG polyline points
    failed: list[float]  # x of samples without a score
    best: float | None
    resets: int = 0


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom: int
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def score_chart(view: RunView, width: int = 720, height: int = 300) -> Chart:
    """Score against samples, one series per island (x: the sample's place in the run's
    order of evaluation, so islands share the axis): a dot per scored program, a tick for
    one without a score, the island's running best as a step line."""
    left, right, top, bottom = 56, 12, 12, 34
    samples = [s for ss in view.islands.values() for s in ss]
    scores = [s.score for s in samples if s.score is not None]
    n = max((s.n for s in samples), default=1)
    lo, hi = min(scores, default=0.0), max(scores, default=1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: float) -> float:
        return round(left + (i - 0.5) / n * plot_w, 1)

    def y(v: float) -> float:
        return round(top + (hi - v) / (hi - lo) * plot_h, 1)

    series = []
    for k, (island, members) in enumerate(view.islands.items()):
        dots, failed, line = [], [], []
        best: float | None = None
        for s in members:
            if s.score is None:
                failed.append(x(s.n))
                continue
            dots.append((x(s.n), y(s.score), f"{s.program_id} · sample {s.n} · score {s.score:g}"))
            if best is None or s.score > best:
                if best is not None:
                    line.append(f"{x(s.n)},{y(best)}")
                best = s.score
                line.append(f"{x(s.n)},{y(best)}")
        if best is not None:
            line.append(f"{x(n + 0.5)},{y(best)}")
        series.append(Series(island, PALETTE[k % len(PALETTE)], dots, " ".join(line), failed, best,
                             view.resets.get(island, 0)))
    x_ticks = [(x(v), f"{v:g}") for v in _ticks(1, n, 6) if 1 <= v <= n and v == int(v)]
    y_ticks = [(y(v), f"{v:g}") for v in _ticks(lo, hi, 5) if lo <= v <= hi]
    return Chart(width, height, left, height - bottom, series, x_ticks, y_ticks)


def markup(text: str) -> Markup:
    """Pre-rendered HTML (from these templates) placed inside another template."""
    return Markup(text)  # noqa: S704 - only ever our own autoescaped renders
