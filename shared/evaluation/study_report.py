"""The study's report: one row per model × quant (``report.json``, ``report.md``) and one
plot (``tradeoff.png``): quality against generation tok/s, a point per row sized by its
peak memory, the Pareto front drawn (no other point is both faster and better)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shared.evaluation.models import ModelRef
from shared.evaluation.results import SuiteResult
from shared.evaluation.study import StudyModel

QUALITY = (("humaneval", "pass@1", "HumanEval pass@1"), ("gsm8k", "accuracy", "GSM8K accuracy"))
REFERENCE_NOTE = ("KLD and same-top-token rate are measured against {ref}, the bigger model as shipped and the "
                  "best source available offline (no F16 model installs here): for its requantized rows they are "
                  "the cost of quantizing *further* than {quant}, for the smaller model's rows the distance of "
                  "another, smaller model — never the cost of quantizing from F16.")


def _name(ref: ModelRef) -> str:
    """'Qwen2.5-Coder 1.5B' from the GGUF header (basename + size label), else the file name."""
    from shared.llm.gguf_meta import read_gguf_metadata

    meta = read_gguf_metadata(ref.path)
    parts = [meta.get("general.basename"), meta.get("general.size_label")]
    from shared.evaluation.quantize import base_name

    return " ".join(p for p in parts if p) or base_name(ref.path)


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat record per study point (what report.json holds)."""
    suites: dict[str, SuiteResult | None] = result["suites"]
    out = []
    sources = {m.family: ref for m, ref in result["points"] if m.quant is None}
    for m, ref in result["points"]:
        m_: StudyModel = m
        name, src_quant = _name(sources[m_.family]), sources[m_.family].quant
        row: dict[str, Any] = {
            "label": f"{name} {ref.quant}" + (f" (from {src_quant})" if m_.quant else ""),
            "model": name, "quant": ref.quant, "requantized_from": src_quant if m_.quant else None,
            "path": str(ref.path), "size_bytes": ref.size_bytes, "reference": str(ref.path) == result["reference"],
        }
        for phase, suite in suites.items():
            got = next((x for x in suite.models if x.path == str(ref.path)), None) if suite else None
            if got is not None:
                row[phase] = {**got.metrics, "n": got.n}
        speed = result["speed"].get(str(ref.path))
        if speed:
            row["speed"] = speed
        out.append(row)
    return out


def reference_note(table: list[dict[str, Any]]) -> str:
    ref = next((r for r in table if r["reference"]), None)
    return REFERENCE_NOTE.format(ref=ref["label"] if ref else "the bigger model", quant=ref["quant"] if ref else "it")


def _q(row: dict[str, Any], phase: str, key: str) -> float | None:
    v = row.get(phase, {}).get(key)
    return float(v) if v is not None else None


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (at least as fast and as good, and
    strictly better in one), maximising both coordinates; sorted by the first."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def _stderr(p: float | None, n: int | None) -> str:
    return f" ± {math.sqrt(p * (1 - p) / n):.2f}" if p is not None and n else ""


def _f(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def render_markdown(result: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """The study table, the reference, how speed was measured, and the comparisons."""
    lines = ["# Quantization study: a bigger model quantized harder, or a smaller one kept precise?", "",
             "| model × quant | file MB | peak RSS MB | HumanEval pass@1 | GSM8K acc | PPL | KLD vs ref | same top "
             "| prompt tok/s | gen tok/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        sp = r.get("speed", {})
        he, gs = _q(r, "humaneval", "pass@1"), _q(r, "gsm8k", "accuracy")
        cells = [r["label"] + (" (reference)" if r["reference"] else ""), f"{r['size_bytes'] / 1e6:.0f}",
                 f"{sp['peak_rss_bytes'] / 1e6:.0f}" if sp else "–",
                 _f(he) + _stderr(he, r.get("humaneval", {}).get("n")), _f(gs) + _stderr(gs, r.get("gsm8k", {}).get("n")),
                 _f(_q(r, "text", "ppl")), "ref" if r["reference"] else _f(_q(r, "text", "kld_mean"), 3),
                 "ref" if r["reference"] else _f(_q(r, "text", "same_top")),
                 _f(sp.get("prompt_tok_s"), 1), _f(sp.get("gen_tok_s"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    n = {ph: next((r[ph]["n"] for r in table if ph in r), None) for ph in ("humaneval", "gsm8k", "text")}
    speeds = [r["speed"] for r in table if r.get("speed")]
    lines += ["", f"HumanEval: the first {n['humaneval']} problems, greedy, pass@1 (± one binomial standard error); "
              f"GSM8K: the first {n['gsm8k']} test problems, exact match on the final number; PPL over "
              f"{n['text']} chunks of 512 tokens of the Canterbury corpus texts.", "", reference_note(table), ""]
    if speeds:
        loads = [s["loadavg"] for s in speeds]
        lines += [f"Speed: each model in a process of its own at {speeds[0]['threads']} threads, n_ctx "
                  f"{speeds[0]['n_ctx']}, {speeds[0]['max_tokens']} generated tokens per prompt (EOS banned), "
                  f"OMP_WAIT_POLICY={speeds[0]['omp_wait_policy']}; 1-minute load average during the measurements "
                  f"{min(loads):.1f}–{max(loads):.1f}. Peak RSS is that process's VmHWM.", ""]
    lines += comparisons(table)
    return "\n".join(lines) + "\n"


def comparisons(table: list[dict[str, Any]]) -> list[str]:
    """Each requantized bigger-model point against the smaller model as shipped."""
    small = next((r for r in table if r["requantized_from"] is None and not r["reference"]), None)
    if small is None:
        return []
    out = [f"Against {small['label']}:", ""]
    for r in table:
        if r is small or r["model"] == small["model"]:
            continue
        parts = []
        for phase, key, title in QUALITY:
            a, b = _q(r, phase, key), _q(small, phase, key)
            if a is not None and b is not None:
                parts.append(f"{title} {a - b:+.2f}")
        rs, ss = r.get("speed", {}), small.get("speed", {})
        if rs and ss and ss.get("gen_tok_s"):
            parts.append(f"{rs['gen_tok_s'] / ss['gen_tok_s']:.2f}× the generation speed")
            parts.append(f"{rs['peak_rss_bytes'] / ss['peak_rss_bytes']:.2f}× the memory")
        out.append(f"- {r['label']}: " + (", ".join(parts) or "not measured yet"))
    return out + [""]


def plot(table: list[dict[str, Any]], path: Path) -> Path | None:
    """Quality vs generation tok/s (one panel per quality suite), sized by peak RSS."""
    panels = [(ph, key, title) for ph, key, title in QUALITY
              if any(_q(r, ph, key) is not None and r.get("speed") for r in table)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 5.0), squeeze=False)
    for ax, (ph, key, title) in zip(axes[0], panels, strict=True):
        pts = [(r, r["speed"]["gen_tok_s"], _q(r, ph, key)) for r in table if r.get("speed") and _q(r, ph, key) is not None]
        for r, x, y in pts:
            mb = r["speed"]["peak_rss_bytes"] / 1e6
            ax.scatter([x], [y], s=max(30.0, mb / 4), alpha=0.55, edgecolors="black", zorder=3,
                       color="tab:orange" if r["requantized_from"] else "tab:blue")
            ax.annotate(f"{r['model'].split()[-1]} {r['quant']}{'*' if r['requantized_from'] else ''}\n{mb:.0f} MB", (x, y), textcoords="offset points",
                        xytext=(9, -4), fontsize=8)
        front = pareto([(x, y) for _, x, y in pts])  # type: ignore[misc]
        if len(front) > 1:
            ax.plot([pts[i][1] for i in front], [pts[i][2] for i in front], "--", color="gray", zorder=2,  # type: ignore[misc]
                    label="Pareto front (nothing is both faster and better)")
            ax.legend(fontsize=8, loc="lower left")
        ax.set_title(f"{title} vs generation speed (size = peak RSS)", fontsize=10)
        ax.set_xlabel("generation tok/s (higher is faster)")
        ax.set_ylabel(f"{title} (higher is better)")
        ax.grid(True, alpha=0.3)
        ax.margins(0.25)
    fig.text(0.01, 0.005, "blue: as shipped; orange (*): requantized from the shipped file", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md and tradeoff.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(result)
    meta = {k: result[k] for k in ("reference", "threads", "options", "finished_at")}
    (out / "report.json").write_text(json.dumps({"study": meta, "reference_note": reference_note(table), "rows": table}, indent=1))
    (out / "report.md").write_text(render_markdown(result, table))
    paths = {"json": out / "report.json", "md": out / "report.md"}
    if png := plot(table, out / "tradeoff.png"):
        paths["png"] = png
    return paths
