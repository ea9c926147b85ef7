"""Follow-up quality: a two-step code thread (a request, then a change of requirement)
through coder-agent's follow-up path vs the same agent given the second request alone,
same model, same engine, same run.

For each case of bench/followup_cases.py:
- step 1: the first request, solved as coder-agent solves it (``followup.solve``);
- thread arm: the change of requirement as a follow-up of step 1 — the job carries step
  1's turn exactly as the router builds it (``threads.turn_of``): the program to edit,
  the request, the checks it held;
- alone arm: the change of requirement as a new task, nothing before it.
Both arms' final code is judged in code-sandbox by hidden checks the agent never sees:
``keep`` (what the first request asked that the change leaves as it was) and ``new``
(what the change asks); a thread is right when both pass. A real nats-server and
code-sandbox run; the model runs in-process (1 thread unless told).

Long runs: one results file per case under --results (a rerun resumes). The last line is
one JSON object: ``both_thread`` vs ``both_alone`` (fractions of cases), the gain in
points, per-requirement rates, step 1's done rate, tokens and seconds per arm.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import time
from pathlib import Path

from _coder import SMALL, choose_model, coder_bench
from _common import emit
from followup_cases import CASES

from services.coder_agent import followup
from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from services.router.threads import turn_of
from shared.contracts import (
    AgentJob,
    ExecLimits,
    ExecRequest,
    StepResult,
    TaskResult,
    TaskState,
    TaskSubmit,
    ThreadTurn,
)

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 4 * 3600  # quality, not latency


def as_turn(task_id: str, text: str, result: StepResult) -> ThreadTurn:
    """Step 1 as the router records it in the thread."""
    task = TaskSubmit(task_id=task_id, kind="code", text=text)
    final = TaskResult(task_id=task_id, status=result.status, kind="code", answer=result.answer, code=result.code,
                       checks=result.checks)
    return turn_of(TaskState(task=task, status=result.status, route=["coder"], result=final))


async def main_async(args: argparse.Namespace, settings: CoderSettings, results: Path) -> dict:
    cases = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    load_start = os.getloadavg()
    async with coder_bench(args.cpus) as bench:

        async def judge(code: str | None, checks: tuple[str, ...]) -> bool:
            if not code:
                return False
            limits = ExecLimits(wall_s=60, cpu_s=20)
            for _ in range(3):  # a run the busy machine cut short is no verdict: run it again
                r = await bench.run(ExecRequest(code=code + "\n\n" + "\n".join(checks) + "\n", limits=limits))
                if r.status != "timeout" or r.cpu_s >= 0.9 * limits.cpu_s:
                    break
            return r.status == "ok" and r.exit_code == 0

        async def solve(task_id: str, text: str, thread: list[ThreadTurn]) -> tuple[StepResult, float]:
            bench.fresh()
            job = AgentJob(task_id=task_id, step_id=f"{task_id}.1", agent="coder", text=text, thread=thread,
                           deadline=time.time() + DEADLINE_S)
            t0 = time.monotonic()
            result = await followup.solve(CodeSolver(bench.engine, bench.run, settings), job, bench.run)
            seconds = time.monotonic() - t0
            print(f"  {task_id}: {result.status} in {seconds:.0f}s, {result.usage.output_tokens} tokens, "
                  f"{len(result.attempts)} candidates", flush=True)
            return result, seconds

        rows = []
        for i, case in enumerate(cases, 1):
            path = results / f"{case.name}.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
                continue
            first, first_s = await solve(f"f{i}a", case.step1, [])
            thread, thread_s = await solve(f"f{i}b", case.step2, [as_turn(f"f{i}a", case.step1, first)])
            alone, alone_s = await solve(f"f{i}c", case.step2, [])
            row = {"name": case.name, "step1": {"status": first.status, "code": first.code,
                                                "seconds": round(first_s, 1), "tokens": first.usage.output_tokens},
                   "load": os.getloadavg()[0]}
            for arm, result, seconds in (("thread", thread, thread_s), ("alone", alone, alone_s)):
                keep, new = await judge(result.code, case.keep), await judge(result.code, case.new)
                row[arm] = {"status": result.status, "keep": keep, "new": new, "both": keep and new,
                            "code": result.code, "seconds": round(seconds, 1), "tokens": result.usage.output_tokens,
                            "candidates": len(result.attempts),
                            "earlier_checks": [(c.check, c.held) for c in result.checks if c.turn]}
            path.write_text(json.dumps(row, indent=1))
            rows.append(row)
            print(f"[{i}/{len(cases)}] {case.name}: step1 {first.status}; thread keep={row['thread']['keep']} "
                  f"new={row['thread']['new']}; alone keep={row['alone']['keep']} new={row['alone']['new']}  "
                  f"(running both: thread {sum(r['thread']['both'] for r in rows)}/{len(rows)}, "
                  f"alone {sum(r['alone']['both'] for r in rows)}/{len(rows)})", flush=True)
    return report(rows, args, settings, load_start)


def report(rows: list[dict], args: argparse.Namespace, settings: CoderSettings, load_start: tuple) -> dict:
    n = len(rows)
    rate = lambda arm, k: round(sum(r[arm][k] for r in rows) / n, 4)  # noqa: E731
    mean = lambda arm, k: round(statistics.fmean(r[arm][k] for r in rows), 1)  # noqa: E731
    return {
        "n": n, "model": args.model_id, "threads": args.threads, "candidates": settings.candidates,
        "step1_done": round(sum(r["step1"]["status"] == "done" for r in rows) / n, 4),
        "keep_thread": rate("thread", "keep"), "keep_alone": rate("alone", "keep"),
        "new_thread": rate("thread", "new"), "new_alone": rate("alone", "new"),
        "thread_seconds": mean("thread", "seconds"), "alone_seconds": mean("alone", "seconds"),
        "thread_tokens": mean("thread", "tokens"), "alone_tokens": mean("alone", "tokens"),
        "loadavg_start": round(load_start[0], 2), "loadavg_end": round(os.getloadavg()[0], 2),
        "both_thread": rate("thread", "both"), "both_alone": rate("alone", "both"),
        "gain_points": round(100 * (rate("thread", "both") - rate("alone", "both")), 1),
    }


def settings_key(model: str, s: CoderSettings) -> str:
    fields = ("candidates", "samples", "max_candidates", "max_rounds", "sample_temperature", "max_tokens",
              "tests_below_trusted", "write_tests")
    blob = json.dumps({f: getattr(s, f) for f in fields}, sort_keys=True)
    return f"{model}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the nats-server and sandbox too
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--model", default=None, help="roster model id (default: the coder role's model)")
    ap.add_argument("--small", action="store_true", help=f"the 0.5B model ({SMALL})")
    ap.add_argument("--threads", type=int, default=1, help="model threads (the agent's share of a 2-core machine: 1)")
    ap.add_argument("--cpus", default=None, help="pin the model to these cpus (e.g. 0); default: not pinned")
    ap.add_argument("--results", default=None, help="folder of per-case results (resumed when present)")
    args = ap.parse_args()
    args.model_id = choose_model(SMALL if args.small else args.model, args.threads)
    settings = CoderSettings()
    results = Path(args.results or REPO / ".syndicate" / "bench" / "followups" / settings_key(args.model_id, settings))
    results.mkdir(parents=True, exist_ok=True)
    print(f"results: {results} (a rerun resumes there)", flush=True)
    emit(asyncio.run(main_async(args, settings, results)))


if __name__ == "__main__":
    main()
