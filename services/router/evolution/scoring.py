"""Scoring a candidate: the spec's scoring program runs in code-sandbox with the candidate
beside it as ``<module>.py`` (importable), and must print one number — or one JSON
object — as its last line.

The stage to score comes on stdin as JSON: ``{"stage": "quick", "params": {...}}``
(the spec's cascade stage names, its validation and test stages, and its ``params``).
A scorer with a single stage may ignore stdin.

Only a clean run earns a score: status ``ok``, exit code 0, and a last non-empty stdout
line that is a finite number or a JSON object with a finite ``"score"``; the object may
also carry ``"signature"`` (per-instance scores: programs with equal signatures behave
alike and share a cluster), ``"fingerprint"`` (a hash of the program's decisions: equal
fingerprints are the same behaviour, the later program is a duplicate) and
``"metrics"`` (numbers reported for the test stage). A crash, a timeout, a memory or
output limit, or output that does not end in a score earns nothing; the verdict and the
tail of the output are kept for the next prompts. The candidate runs in the scorer's
process, so a scorer that counts operations (not wall time) is both deterministic on a
busy machine and harder for a candidate to fool.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from shared.contracts import EvolveSpec, ExecLimits, ExecRequest, ExecResult, FileIn

DETAIL_CHARS = 800


@dataclass
class StageScore:
    """What one scoring run said."""

    score: float | None
    verdict: str  # "ok", a sandbox status, "runtime_error", "no_number"
    detail: str  # tail of the output (diagnostics, or why it failed)
    signature: list[float] = field(default_factory=list)
    fingerprint: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def scoring_request(spec: EvolveSpec, code: str, run_id: str, stage: str = "train") -> ExecRequest:
    """The sandbox request that scores ``code`` at ``stage``."""
    lim = spec.limits
    return ExecRequest(
        code=spec.scorer, files=[FileIn(path=f"{spec.module}.py", content=code)], task_id=run_id,
        stdin=json.dumps({"stage": stage, "params": spec.params}),
        limits=ExecLimits(wall_s=lim.score_wall_s, cpu_s=lim.score_wall_s, memory_mb=lim.score_memory_mb),
    )


def read_stage(r: ExecResult) -> StageScore:
    """The score (or why there is none) of one scoring run."""
    tail = _tail(r)
    if r.status != "ok" or r.exit_code not in (0, None):
        verdict = r.status if r.status != "ok" else "runtime_error"
        return StageScore(None, verdict, tail or r.message, wall_s=r.wall_s)
    lines = [ln.strip() for ln in r.stdout.strip().splitlines() if ln.strip()]
    if not lines:
        return StageScore(None, "no_number", "the scoring program printed nothing", wall_s=r.wall_s)
    last = lines[-1]
    out = StageScore(None, "no_number", "", wall_s=r.wall_s)
    if last.startswith("{"):
        try:
            data = json.loads(last)
            out.score = float(data["score"])
            out.signature = [float(x) for x in data.get("signature", [])]
            out.fingerprint = str(data.get("fingerprint", ""))[:64]
            out.metrics = {str(k): float(v) for k, v in dict(data.get("metrics", {})).items()}
        except (ValueError, TypeError, KeyError) as exc:
            out.detail = f"last output line is JSON without a numeric 'score' ({exc}): {last[:200]!r}"
            return out
    else:
        try:
            out.score = float(last)
        except ValueError:
            out.detail = f"last output line is not a number: {last[:200]!r}"
            return out
    if not math.isfinite(out.score) or not all(math.isfinite(x) for x in out.signature):
        out.score, out.detail = None, f"score is not finite: {last[:200]!r}"
        return out
    out.verdict, out.detail = "ok", _tail(r, drop_last=last.startswith("{"))
    return out


def read_score(r: ExecResult) -> tuple[float | None, str, str]:
    """(score or None, verdict, detail) of a scoring run (mode "generations")."""
    s = read_stage(r)
    return s.score, s.verdict, s.detail if s.score is None else _tail(r)


def _tail(r: ExecResult, drop_last: bool = False) -> str:
    out = r.stdout.strip()
    if drop_last:  # the JSON result line is machinery, not a diagnostic for the model
        out = "\n".join(out.splitlines()[:-1]).strip()
    text = "\n".join(p for p in (r.stderr.strip(), out) if p)
    return text[-DETAIL_CHARS:]
