"""The final report of an evolution run: score against samples (data and PNG), the islands,
lineage of the winner, test metrics next to the seed and the baselines, and the summary
``syndicate evolve --json`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts import EvolveGeneration, EvolveIsland, EvolveProgram, EvolveRun


def curve(run: EvolveRun, gens: list[EvolveGeneration]) -> list[dict[str, Any]]:
    """Mode "generations": best score after each generation (generation 0: the seed)."""
    out = [{"generation": 0, "best_score": run.seed_score, "scored": 1 if run.seed_score is not None else 0, "failed": 0}]
    for g in gens:
        if g.status == "done":
            out.append({"generation": g.n, "best_score": g.best_score, "scored": g.scored, "failed": g.failed})
    return out


def sample_curve(programs: list[EvolveProgram]) -> list[dict[str, Any]]:
    """Mode "islands": the best training score so far after each sample that raised it."""
    out: list[dict[str, Any]] = []
    best: float | None = None
    for p in sorted(programs, key=lambda p: p.sample):
        if p.score is None or p.verdict not in ("ok", "baseline") or p.program_id.startswith("base-"):
            continue
        if best is None or p.score > best:
            best = p.score
            out.append({"sample": p.sample, "best_score": best, "program_id": p.program_id, "island": p.island})
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


def _verdicts(programs: list[EvolveProgram]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in programs:
        if p.program_id != "seed" and not p.program_id.startswith("base-"):
            out[p.verdict] = out.get(p.verdict, 0) + 1
    return out


def summary(run: EvolveRun, gens: list[EvolveGeneration], programs: list[EvolveProgram],
            islands: list[EvolveIsland] | None = None) -> dict[str, Any]:
    """The run's outcome as one JSON-able object."""
    by_id = {p.program_id: p for p in programs}
    candidates = [p for p in programs if p.program_id != "seed" and not p.program_id.startswith("base-")]
    islands_mode = run.spec.mode == "islands"
    final_id = (run.final_id or run.best_id) if islands_mode else run.best_id
    final = by_id.get(final_id)
    seed, top = run.seed_score, (final.score if final is not None else run.best_score)
    minutes = run.active_s / 60 if islands_mode else None
    data: dict[str, Any] = {
        "run_id": run.run_id, "name": run.spec.name, "status": run.status, "mode": run.spec.mode,
        "error": run.error.model_dump() if run.error else None,
        "best_program": final.code if final else None, "best_score": top, "best_id": final_id,
        "seed_score": seed, "improvement": (top - seed) if seed is not None and top is not None else None,
        "candidates": len(candidates), "verdicts": _verdicts(programs),
        "lineage": [{"program_id": p.program_id, "score": p.score, "validation": p.validation, "island": p.island,
                     "sample": p.sample, "generation": p.generation, "parents": p.parents,
                     "trace_id": p.traceparent.split("-")[1] if p.traceparent.count("-") == 3 else None}
                    for p in lineage(by_id, final_id)],
    }
    if islands_mode:
        hours = (minutes or 0.0) / 60
        best_train = by_id.get(run.best_id)
        models: dict[str, int] = {}  # who wrote the candidates (the engine's model name)
        asked: dict[str, int] = {}  # which of the spec's models they were asked of
        for p in candidates:
            if p.model:
                models[p.model] = models.get(p.model, 0) + 1
            key = p.asked_model or "jobs"
            asked[key] = asked.get(key, 0) + 1
        data.update({
            "samples": run.asked, "samples_budget": run.spec.sample_budget, "answered": run.answered,
            "valid": run.valid, "valid_fraction": round(run.valid / run.answered, 4) if run.answered else None,
            "minutes": round(minutes or 0.0, 2), "minutes_budget": run.spec.minutes,
            "samples_per_hour": round(run.answered / hours, 1) if hours else None,
            "valid_per_hour": round(run.valid / hours, 1) if hours else None,
            "best_validation": final.validation if final else None,
            "best_train_id": run.best_id, "best_train_score": run.best_score,
            "best_train_validation": best_train.validation if best_train else None,
            "islands": [{"island": i.island, "best_id": i.best_id, "best_score": i.best_score,
                         "best_validation": i.best_validation, "samples": i.samples, "valid": i.valid,
                         "clusters": len(i.clusters), "programs": sum(len(v) for v in i.clusters.values()),
                         "resets": i.epoch} for i in islands or []],
            "curve": sample_curve(programs), "models": models, "models_asked": asked, "tokens": sum(p.tokens for p in candidates),
        })
        data.update(test_report(run, by_id))
    else:
        data.update({
            "generations": run.generation, "generations_planned": run.spec.generations,
            "population": run.spec.population, "children": run.spec.children or run.spec.population,
            "curve": curve(run, gens), "traces": {str(g.n): g.trace_ids for g in gens},
        })
    return data


def test_report(run: EvolveRun, by_id: dict[str, EvolveProgram]) -> dict[str, Any]:
    """Test-stage results: ``test`` (the final program's metrics), ``test_<metric>``,
    ``best_train_test_<metric>``, ``seed_<metric>`` and ``<baseline>_<metric>``."""
    out: dict[str, Any] = {}
    final = by_id.get(run.final_id or run.best_id)
    metric = run.spec.cascade.metric or "score"
    out["metric"] = metric
    out["test"] = final.test if final else None
    out[f"test_{metric}"] = (final.test or {}).get(metric) if final else None
    best_train = by_id.get(run.best_id)
    if best_train is not None and best_train.test:
        out[f"best_train_test_{metric}"] = best_train.test.get(metric)
    seed = by_id.get("seed")
    if seed is not None and seed.test:
        out[f"seed_{metric}"] = seed.test.get(metric)
    for name in run.spec.baselines:
        base = by_id.get(f"base-{name}")
        out[f"{name}_{metric}"] = (base.test or {}).get(metric) if base else None
    return out


def plot_curve(programs: list[EvolveProgram], points: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Score curve PNG: every scored candidate as a dot, the best-so-far as a line. None
    when matplotlib is not installed. Mode "islands": x is the sample number and the dots
    are coloured by island; mode "generations": x is the generation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    by_samples = bool(points) and "sample" in points[0]
    cands = [p for p in programs if p.score is not None and not p.program_id.startswith("base-")]
    if by_samples:
        islands = sorted({p.island for p in cands if p.island is not None})
        for i in islands:
            mine = [p for p in cands if p.island == i and p.sample > 0]
            ax.scatter([p.sample for p in mine], [p.score or 0.0 for p in mine], s=12, alpha=0.55, label=f"island {i}")
        xs = [pt["sample"] for pt in points] + [max([p.sample for p in cands], default=0)]
        ys = [pt["best_score"] for pt in points] + [points[-1]["best_score"]] if points else []
        if points:
            ax.plot(xs, ys, color="black", drawstyle="steps-post", label="best so far")
        ax.set_xlabel("samples")
    else:
        scored = [(p.generation, p.score or 0.0) for p in cands]
        ax.scatter([g for g, _ in scored], [s for _, s in scored], s=14, alpha=0.5, label="candidates")
        line = [(pt["generation"], pt["best_score"]) for pt in points if pt["best_score"] is not None]
        if line:
            ax.plot([x for x, _ in line], [y for _, y in line], marker="o", color="C1", label="best so far",
                    drawstyle="steps-post")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("generation")
    ax.set_ylabel("training score (higher is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(run: EvolveRun, gens: list[EvolveGeneration], programs: list[EvolveProgram], out_dir: Path,
                 islands: list[EvolveIsland] | None = None) -> dict[str, Any]:
    """Write best.py, curve.png and report.json to ``out_dir``; return the summary (with paths)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = summary(run, gens, programs, islands)
    if data["best_program"]:
        (out_dir / "best.py").write_text(data["best_program"])
        data["best_path"] = str(out_dir / "best.py")
    png = plot_curve(programs, data["curve"], out_dir / "curve.png", f"{run.spec.name} ({run.run_id})")
    data["curve_png"] = str(png) if png else None
    (out_dir / "report.json").write_text(json.dumps(data, indent=2))
    data["report_path"] = str(out_dir / "report.json")
    return data
