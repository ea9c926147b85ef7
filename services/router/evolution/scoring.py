"""Scoring a candidate: the spec's scoring program runs in code-sandbox with the candidate
beside it as ``<module>.py`` (importable), and must print one number as its last line.

Only a clean run earns a score: status ``ok``, exit code 0, and a last non-empty stdout
line that is a finite number. A crash, a timeout, a memory or output limit, or output that
does not end in a number scores nothing; the verdict and the tail of the output are kept
for the next generation's prompts. The candidate runs in the scorer's process, so a
scorer that counts operations (not wall time) is both deterministic on a busy machine and
harder for a candidate to fool.
"""

from __future__ import annotations

import math

from shared.contracts import EvolveSpec, ExecLimits, ExecRequest, ExecResult, FileIn

DETAIL_CHARS = 800


def scoring_request(spec: EvolveSpec, code: str, run_id: str) -> ExecRequest:
    """The sandbox request that scores ``code``."""
    lim = spec.limits
    return ExecRequest(
        code=spec.scorer, files=[FileIn(path=f"{spec.module}.py", content=code)], task_id=run_id,
        limits=ExecLimits(wall_s=lim.score_wall_s, cpu_s=lim.score_wall_s, memory_mb=lim.score_memory_mb),
    )


def read_score(r: ExecResult) -> tuple[float | None, str, str]:
    """(score or None, verdict, detail) of a scoring run."""
    out = r.stdout.strip()
    tail = _tail(r)
    if r.status != "ok" or r.exit_code not in (0, None):
        verdict = r.status if r.status != "ok" else "runtime_error"
        return None, verdict, tail or r.message
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if not lines:
        return None, "no_number", "the scoring program printed nothing"
    try:
        score = float(lines[-1])
    except ValueError:
        return None, "no_number", f"last output line is not a number: {lines[-1][:200]!r}"
    if not math.isfinite(score):
        return None, "no_number", f"score is not finite: {lines[-1][:200]!r}"
    return score, "ok", tail


def _tail(r: ExecResult) -> str:
    parts = [r.stderr.strip(), r.stdout.strip()]
    text = "\n".join(p for p in parts if p)
    return text[-DETAIL_CHARS:]
