"""Replay coder-agent schedules offline over results of a wide bench/coder_quality.py run.

Collect once with every candidate written and checked (no early stop, one round):

    SYNDICATE_CANDIDATES=8 SYNDICATE_EARLY_STOP=false SYNDICATE_MAX_ROUNDS=1 \\
        python bench/coder_quality.py --suite humaneval --quick --results DIR

then replay schedules over DIR: each problem's greedy answer and samples (in their order),
the tests the model wrote, every candidate's outcome on every check and probe, and the
hidden verdict of each. A schedule is (first round k1, tests written or not, k2 samples
in a later round while the evidence does not decide); the ranking is the agent's own
(services/coder_agent/ranking.py). Repairs are not replayed (they were not collected).

Cost is work in token units of a compute-bound CPU (rows cost linearly: docs/batching.md):
output tokens, plus prompt tokens at ``--prefill`` of an output token's cost; with
``--shared-prefix`` (the engine shares one prefill among requests of one prompt and a
common prefix) a round's prompt is evaluated once and the test writer pays only its own
request. Generations of a round run together: a round stopped early (the evidence
decided when candidate j ended) costs each other generation of it at most j's length.
Last line: one JSON object per schedule (quality, cost ratio to the model once).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.coder_agent.checks import CheckOutcome  # noqa: E402
from services.coder_agent.ranking import Candidate, Tiers, rank  # noqa: E402

REQUEST = 35  # tokens of the code request after the task: what the tests prompt does not share


@dataclass(frozen=True)
class Schedule:
    k1: int  # programs in the first round (greedy first)
    tests: bool  # the model writes tests (when the task states fewer than 3 checks)
    k2: int  # fresh samples of a later round, while the evidence does not decide
    early: bool = True  # a round stops once the evidence decides
    decide_on: str = "all"  # CoderSettings.decide_on

    @property
    def name(self) -> str:
        return (f"k1={self.k1} tests={'y' if self.tests else 'n'} k2={self.k2} decide={self.decide_on}"
                f"{'' if self.early else ' no-early'}")


def candidates(row: dict) -> list[tuple[Candidate, bool, int]]:
    """(candidate, hidden verdict, output tokens) in the order written."""
    out = []
    for k, (c, outs, missing) in enumerate(zip(row["agent"]["candidates"], row["outcomes"], row["missing"], strict=True)):
        outcomes = None if outs is None else [CheckOutcome(i, ok, actual, "" if ok else ("Error" if raised else "AssertionError"))
                                              for i, ok, raised, actual in outs]
        cand = Candidate(index=k + 1, origin=c["origin"], code=c["code"], answer="", outcomes=outcomes, missing=missing)
        if c["code"] is None or outcomes is None and not c["code"].strip():
            cand.parse_error = "no code"
        out.append((cand, c["hidden"], c["tokens"]))
    return out


def replay(row: dict, s: Schedule, prefill: float, shared: bool) -> tuple[bool, float, float, int]:
    """(right, agent cost, single cost, candidates written) of one problem under ``s``."""
    pool_all = candidates(row)
    n_trusted = row["n_trusted"]
    asked = bool(row["rules"] or row["model"]) or row["n_trusted"] < 3
    use_tests = s.tests and asked
    tiers = Tiers(list(range(n_trusted)), row["rules"] if use_tests else [], row["model"] if use_tests else [])
    prompt = row["single"]["input_tokens"]
    cand_tokens = sum(t for _, _, t in pool_all)
    tests_out = max(0, row["agent"]["tokens"] - cand_tokens) if asked else 0
    tests_in = max(0, row["agent"]["input_tokens"] - prompt * len(pool_all)) if asked else 0
    single = prompt * prefill + row["single"]["tokens"]

    cost = 0.0
    pool: list[Candidate] = []

    def run_round(members: list[tuple[Candidate, bool, int]], tests_now: bool, first: bool) -> bool:
        """Add ``members`` (and the tests) as one round; True when the evidence decided."""
        nonlocal cost
        gens = [t for _, _, t in members] + ([tests_out] if tests_now else [])
        if shared:  # the prompt once (a later round finds it cached); the tests their own request
            cost += (prompt if first else 0) * prefill + (max(0, tests_in - prompt + REQUEST) * prefill if tests_now else 0)
        else:
            cost += len(members) * prompt * prefill + (tests_in * prefill if tests_now else 0)
        # Candidates end in order of their length; the tests must be in before a decision.
        order = sorted(range(len(members)), key=lambda j: members[j][2])
        stop_at = None
        for j in order:
            pool.append(members[j][0])
            if s.early and (not tests_now or members[j][2] >= tests_out) and rank(pool, tiers=tiers).decided_by(s.decide_on):
                stop_at = max(members[j][2], tests_out if tests_now else 0)
                break
        if stop_at is None:
            cost += sum(gens)
            pool[:] = sorted(pool, key=lambda c: c.index)
            return bool(pool) and rank(pool, tiers=tiers).decided_by(s.decide_on)
        cost += sum(min(g, stop_at) for g in gens)
        pool[:] = sorted(pool, key=lambda c: c.index)
        return True

    decided = run_round(pool_all[: s.k1], use_tests, True)
    if not decided and s.k2 and tiers.stated + tiers.rules + tiers.model:
        run_round(pool_all[s.k1: s.k1 + s.k2], False, False)
    best = rank(pool, tiers=tiers).best
    right = next(h for c, h, _ in pool_all if c.index == best.index)
    return right, cost, single, len(pool)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+", help="folders of per-problem results of a wide run")
    ap.add_argument("--prefill", type=float, default=0.7, help="cost of a prompt token in output tokens (measured ~0.7 at 1 thread)")
    ap.add_argument("--shared-prefix", action="store_true", help="one prefill per round and prefix (the engine shares it)")
    args = ap.parse_args()
    rows = [json.loads(p.read_text()) for d in args.results for p in sorted(d.glob("*.json"))]
    rows = [r for r in rows if len(r["agent"]["candidates"]) >= 8 and "rules" in r]
    schedules = [Schedule(1, False, 0), Schedule(1, True, 0), Schedule(1, False, 4)]
    schedules += [Schedule(k1, True, k2, decide_on=d) for d in ("all", "task")
                  for k1, k2 in ((1, 2), (1, 3), (1, 4), (1, 7), (2, 4), (4, 0), (4, 4), (8, 0))]
    schedules += [Schedule(4, True, 4, early=False)]
    single_right = sum(r["single"]["pass"] for r in rows)
    out = []
    for s in schedules:
        results = [replay(r, s, args.prefill, args.shared_prefix) for r in rows]
        right = sum(x[0] for x in results)
        ratio = sum(x[1] for x in results) / sum(x[2] for x in results)
        out.append({"schedule": s.name, "pass1": round(right / len(rows), 4), "gain_points": round(100 * (right - single_right) / len(rows), 1),
                    "work_ratio": round(ratio, 2), "mean_candidates": round(sum(x[3] for x in results) / len(rows), 2)})
        print(f"{s.name:28s} pass@1 {right / len(rows):.3f} ({100 * (right - single_right) / len(rows):+.1f})  "
              f"work x{ratio:.2f}  candidates {out[-1]['mean_candidates']}")
    print(json.dumps({"n": len(rows), "single_pass1": round(single_right / len(rows), 4), "shared_prefix": args.shared_prefix,
                      "prefill": args.prefill, "schedules": out}))


if __name__ == "__main__":
    main()
