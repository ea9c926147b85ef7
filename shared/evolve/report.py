"""The final report of an evolution run: score curve (data and PNG), lineage of the
winner, and the summary ``syndicate evolve --json`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts import EvolveGeneration, EvolveProgram, EvolveRun


def curve(run: EvolveRun, gens: list[EvolveGeneration]) -> list[dict[str, Any]]:
    """Best score after each generation (generation 0: the seed)."""
    out = [{"generation": 0, "best_score": run.seed_score, "scored": 1 if run.seed_score is not None else 0, "failed": 0}]
    for g in gens:
        if g.status == "done":
            out.append({"generation": g.n, "best_score": g.best_score, "scored": g.scored, "failed": g.failed})
    return out


def lineage(programs: dict[str, EvolveProgram], best_id: str) -> list[EvolveProgram]:
    """The winner, its parent, its parent's parent... back to the seed (first parent = the
    program it was a mutation of)."""
    chain: list[EvolveProgram] = []
    seen: set[str] = set()
    pid: str | None = best_id
    while pid and pid in programs and pid not in seen:
        seen.add(pid)
        prog = programs[pid]
        chain.append(prog)
        pid = prog.parents[0] if prog.parents else None
    return chain


def summary(run: EvolveRun, gens: list[EvolveGeneration], programs: list[EvolveProgram]) -> dict[str, Any]:
    """The run's outcome as one JSON-able object."""
    by_id = {p.program_id: p for p in programs}
    best = by_id.get(run.best_id)
    seed, top = run.seed_score, run.best_score
    verdicts: dict[str, int] = {}
    for p in programs:
        if p.program_id != "seed":
            verdicts[p.verdict] = verdicts.get(p.verdict, 0) + 1
    return {
        "run_id": run.run_id, "name": run.spec.name, "status": run.status,
        "error": run.error.model_dump() if run.error else None,
        "generations": run.generation, "generations_planned": run.spec.generations,
        "population": run.spec.population, "children": run.spec.children or run.spec.population,
        "seed_score": seed, "best_score": top,
        "improvement": (top - seed) if seed is not None and top is not None else None,
        "best_id": run.best_id, "best_program": best.code if best else None,
        "candidates": len(programs) - (1 if "seed" in by_id else 0), "verdicts": verdicts,
        "curve": curve(run, gens),
        "lineage": [{"program_id": p.program_id, "generation": p.generation, "score": p.score, "parents": p.parents}
                    for p in lineage(by_id, run.best_id)],
        "traces": {str(g.n): g.trace_ids for g in gens},
    }


def plot_curve(programs: list[EvolveProgram], points: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Score curve PNG: every scored candidate as a dot, the best-so-far as a line. None
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    scored = [(p.generation, p.score) for p in programs if p.score is not None]
    ax.scatter([g for g, _ in scored], [s for _, s in scored], s=14, alpha=0.5, label="candidates")
    line = [(pt["generation"], pt["best_score"]) for pt in points if pt["best_score"] is not None]
    if line:
        ax.plot([x for x, _ in line], [y for _, y in line], marker="o", color="C1", label="best so far",
                drawstyle="steps-post")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("score (higher is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(run: EvolveRun, gens: list[EvolveGeneration], programs: list[EvolveProgram], out_dir: Path) -> dict[str, Any]:
    """Write best.py, curve.png and report.json to ``out_dir``; return the summary (with paths)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = summary(run, gens, programs)
    if data["best_program"]:
        (out_dir / "best.py").write_text(data["best_program"])
        data["best_path"] = str(out_dir / "best.py")
    png = plot_curve(programs, data["curve"], out_dir / "curve.png", f"{run.spec.name} ({run.run_id})")
    data["curve_png"] = str(png) if png else None
    (out_dir / "report.json").write_text(json.dumps(data, indent=2))
    data["report_path"] = str(out_dir / "report.json")
    return data
