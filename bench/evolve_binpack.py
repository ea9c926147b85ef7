"""FunSearch's online bin packing (examples/evolve/binpack-weibull, binpack-or): does
`syndicate evolve` find a priority function that beats best fit on held-out instances?

Each run is what a user types on a `make run` stack (all services, the default models):
`syndicate evolve <spec> --minutes M --seed S --json`. The final program's excess bins
over the L1 bound on the spec's held-out test instances is reported next to best fit and
first fit, measured in the same run by the same scorer.

Arms (comma lists run every combination, on one stack):
- ``--seeds 1,2``: runs with different seeds;
- ``--copies 1,2``: coder-agent copies (the second pinned to the other core): samples/hour;
- ``--modes islands,generations``: the steady-state island engine vs the generational
  loop on the same budget (the loop's final program judged on the same test set).

Goals (Weibull): test excess < 3.0 % in every run (stretch < 2.0 %), best fit ~4 %.
``--quick``: 4 samples of Weibull, to see that it runs. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit
from _evolve import SPECS, Stack, judge, uptime

GOAL_PCT, STRETCH_PCT = 3.0, 2.0


def one_run(stack: Stack, spec: Path, mode: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    budget = ["--samples", str(args.samples)] if args.samples else ["--minutes", str(args.minutes)]
    extra = ["--mode", mode] + [a for m in args.model for a in ("--model", m)]
    if mode == "generations":  # the same number of samples as generations x children
        per = 8
        total = args.samples or 0
        extra += ["--generations", str(max(1, total // per)), "--children", str(per), "--population", "4"]
        budget = []
    started = time.monotonic()
    data = stack.evolve(spec, *budget, *extra, "--seed", str(seed), timeout=args.minutes * 60 + 1800)
    wall = time.monotonic() - started
    out: dict[str, Any] = {k: data.get(k) for k in (
        "run_id", "status", "mode", "samples", "valid_fraction", "minutes", "samples_per_hour", "valid_per_hour",
        "best_score", "best_validation", "best_id", "seed_score", "test_excess_pct", "best_fit_excess_pct",
        "first_fit_excess_pct", "best_train_test_excess_pct", "verdicts", "candidates")}
    out.update(seed=seed, wall_s=round(wall, 1))
    if mode == "generations" and data.get("best_program"):
        test = judge(data["best_program"], spec)
        base = judge(load_seed(spec), spec)
        out.update(test_excess_pct=test.get("excess_pct"), best_fit_excess_pct=base.get("excess_pct"),
                   samples=data.get("candidates"), samples_per_hour=round(3600 * (data.get("candidates") or 0) / wall, 1))
    if out.get("test_excess_pct") is not None and out.get("best_fit_excess_pct") is not None:
        out["beats_best_fit"] = out["test_excess_pct"] < out["best_fit_excess_pct"]
    out["best_program"] = data.get("best_program")
    return out


def load_seed(spec: Path) -> str:
    from shared.evolve.spec import load_spec

    return load_spec(spec).seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="weibull", help="weibull | or | a spec path")
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--samples", type=int, default=None, help="a sample budget instead of --minutes")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--copies", default="1")
    ap.add_argument("--modes", default="islands")
    ap.add_argument("--model", action="append", default=[],
                    help="who writes candidates (syndicate evolve --model): coder-agent and/or a served model")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.seeds, args.copies, args.modes = 4, "1", "1", "islands"
    spec = SPECS.get(args.spec, Path(args.spec))
    runs = []
    started_load = uptime()
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        stack = Stack(Path(tmp))
        stack.up()
        try:
            copies_now = 1
            for copies, mode, seed in itertools.product(
                    [int(c) for c in args.copies.split(",")], args.modes.split(","), [int(s) for s in args.seeds.split(",")]):
                while copies_now < copies:
                    stack.add_coder(cpus=str(copies_now % 2))
                    copies_now += 1
                if copies_now > copies:
                    raise SystemExit("--copies must be ascending (copies are only added)")
                run = one_run(stack, spec, mode, seed, args)
                run["copies"] = copies
                runs.append(run)
                print({k: v for k, v in run.items() if k != "best_program"}, flush=True)
        finally:
            stack.down()
    islands = [r for r in runs if r["mode"] == "islands" and r.get("test_excess_pct") is not None]
    result: dict[str, Any] = {
        "bench": "evolve_binpack", "spec": spec.parent.name, "budget": {"minutes": args.minutes, "samples": args.samples},
        "runs": runs, "uptime_start": started_load, "uptime_end": uptime(),
    }
    if islands:
        worst = max(r["test_excess_pct"] for r in islands)
        result.update(
            worst_test_excess_pct=worst, best_fit_excess_pct=islands[0]["best_fit_excess_pct"],
            first_fit_excess_pct=islands[0]["first_fit_excess_pct"],
            goal_lt_3_pct_every_run=worst < GOAL_PCT, stretch_lt_2_pct_every_run=worst < STRETCH_PCT,
            beats_best_fit_every_run=all(r.get("beats_best_fit") for r in islands),
        )
    emit(result)


if __name__ == "__main__":
    main()
