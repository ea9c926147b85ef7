"""Reports: ``report.md`` (a table per suite), ``report.json`` and ``tradeoff.png`` (quality
vs generation tok/s, one labelled point per model/quant). Writing into a folder that already
holds a report adds or replaces this suite's section, so several runs build one report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shared.evaluation.results import ModelResult, SuiteResult

REPORT_JSON = "report.json"
LOWER_IS_BETTER = {"ppl", "kld_mean"}


def summary(result: SuiteResult) -> dict[str, Any]:
    """The one JSON object ``--json`` prints: per model its metrics, n, tok/s, size and quant."""
    return {
        "suite": result.suite, "type": result.type, "primary": result.primary, "n_items": result.n_items,
        "executor": result.executor, "reference": result.reference,
        "models": {
            m.label: {"metrics": {k: _round(v) for k, v in m.metrics.items()}, "n": m.n, "mode": m.mode,
                      "gen_tok_s": _round(m.speed.get("gen_tok_s")), "prompt_tok_s": _round(m.speed.get("prompt_tok_s")),
                      "ttft_s": _round(m.speed.get("ttft_s")), "size_bytes": m.size_bytes, "quant": m.quant,
                      "notes": m.notes}
            for m in result.models
        },
    }


def _round(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def load_results(out: Path) -> list[SuiteResult]:
    p = out / REPORT_JSON
    if not p.is_file():
        return []
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        return []
    return [SuiteResult.model_validate(s) for s in data.get("suites", [])]


def write_report(result: SuiteResult, out: Path) -> dict[str, Path]:
    """Merge ``result`` into the report in ``out`` and (re)write all three files."""
    out.mkdir(parents=True, exist_ok=True)
    suites = [s for s in load_results(out) if s.suite != result.suite] + [result]
    (out / REPORT_JSON).write_text(json.dumps({"suites": [s.model_dump() for s in suites]}, indent=1))
    (out / "report.md").write_text(render_markdown(suites))
    paths = {"json": out / REPORT_JSON, "md": out / "report.md"}
    png = plot_tradeoff(suites, out / "tradeoff.png")
    if png:
        paths["png"] = png
    return paths


# --- markdown ---------------------------------------------------------------------------------
def _fmt(v: float | None, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{nd}f}"


def _mb(b: int) -> str:
    return f"{b / 1e6:.0f}" if b else "–"


def _speed_lookup(suites: list[SuiteResult]) -> dict[str, dict[str, float]]:
    """Per model label: the speed suite's figures (the most comparable tok/s)."""
    out: dict[str, dict[str, float]] = {}
    for s in suites:
        if s.type == "speed":
            for m in s.models:
                out[m.label] = m.speed
    return out


def quality_columns(s: SuiteResult) -> list[str]:
    if s.type == "code":
        keys = sorted({k for m in s.models for k in m.metrics if k.startswith("pass@")}, key=lambda k: int(k[5:]))
        return keys + [k for k in ("mean_attempts", "routed_to_coder") if any(k in m.metrics for m in s.models)]
    if s.type == "qa":
        return ["accuracy"]
    if s.type == "choice":
        return ["accuracy", "accuracy_norm"]
    if s.type == "text":
        return ["ppl", "ppl_stderr", "kld_mean", "kld_p99", "same_top"]
    return []


def render_markdown(suites: list[SuiteResult]) -> str:
    lines = ["# Evaluation report", ""]
    speed = _speed_lookup(suites)
    for s in suites:
        lines += [f"## {s.suite} ({s.type}, {s.n_items} items)", "", f"Source: {s.source}."]
        if s.executor:
            lines.append(f"Programs ran in: **{s.executor}**.")
        if s.reference:
            lines.append(f"KL divergence and same-top-token rate are against **{s.reference}** on the same tokens "
                         f"(second half of each {s.options.get('n_ctx', 512)}-token chunk).")
        lines.append("")
        if s.type == "speed":
            lines += ["| model | quant | size MB | threads | prompt tok/s | gen tok/s | TTFT s |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for m in s.models:
                for row in m.per_threads:
                    lines.append(f"| {m.label} | {m.quant} | {_mb(m.size_bytes)} | {int(row['threads'])} | "
                                 f"{_fmt(row['prompt_tok_s'], 1)} | {_fmt(row['gen_tok_s'], 1)} | {_fmt(row['ttft_s'], 2)} |")
            lines.append("")
            continue
        cols = quality_columns(s)
        head = ["model", "quant", "size MB", *cols, "gen tok/s", "prompt tok/s", "TTFT s", "n", "notes"]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) + ["---"]) + "|"]
        for m in s.models:
            sp = {**m.speed, **{k: v for k, v in speed.get(m.label, {}).items() if k not in m.speed}}
            cells = [m.label, m.quant, _mb(m.size_bytes), *(_fmt(m.metrics.get(c), 4 if c.startswith("kld") else 3) for c in cols),
                     _fmt(sp.get("gen_tok_s"), 1), _fmt(sp.get("prompt_tok_s"), 1), _fmt(sp.get("ttft_s"), 2), str(m.n),
                     "; ".join(m.notes)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- plot -------------------------------------------------------------------------------------
def _tok_s(m: ModelResult, speed: dict[str, dict[str, float]]) -> float | None:
    v = speed.get(m.label, {}).get("gen_tok_s") or m.speed.get("gen_tok_s")
    return float(v) if v else None


def point_label(m: ModelResult) -> str:
    """'label (QUANT)', without repeating a quant the label already names."""
    if m.quant in ("?", "") or m.quant.lower() in m.label.lower():
        return m.label
    return f"{m.label} ({m.quant})"


def plot_tradeoff(suites: list[SuiteResult], path: Path) -> Path | None:
    """Quality vs generation tok/s per quality suite (one panel each); None without data."""
    speed = _speed_lookup(suites)
    panels = []
    for s in suites:
        pts = [(m, _tok_s(m, speed), m.metrics.get(s.primary)) for m in s.models]
        pts = [(m, x, y) for m, x, y in pts if x is not None and y is not None]
        if s.type != "speed" and pts:
            panels.append((s, pts))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    markers = "osD^vP*Xh<>"
    for ax, (s, pts) in zip(axes[0], panels, strict=True):
        for i, (m, x, y) in enumerate(pts):
            name = point_label(m)
            ax.scatter([x], [y], s=70, marker=markers[i % len(markers)], zorder=3, label=f"{i + 1}  {name}")
            # numbered tags stay legible when points crowd; the legend holds the full names
            ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(7, 5 if i % 2 else -11),
                        fontsize=9, fontweight="bold")
        better = "lower is better" if s.primary in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{s.suite}: {s.primary} vs generation speed", fontsize=11)
        ax.set_xlabel("generation tok/s (higher is faster)")
        ax.set_ylabel(f"{s.primary} ({better})")
        ax.grid(True, alpha=0.3)
        ax.margins(0.2)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
