"""The tasks a new user tries first, through coder-agent's strategy with the default coder
model: `make run`'s is_prime demo, fizzbuzz, is_palindrome and add_1 ... add_8 (the cases
issue #16 saw end `failed` with right code, or pass with a wrong check).

For each task: its status, whether the chosen code is right (reference asserts run in
code-sandbox on it), and whether every check the answer stands on is right (each run
against a reference implementation in code-sandbox). Last line JSON with `done`,
`correct`, `checks_correct` (counts) and `n`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from _coder import SMALL, choose_model, coder_bench
from _common import emit

from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from shared.contracts import AgentJob, ExecRequest

DEMO = "Write a Python function is_prime(n) that returns True when the integer n is a prime number and False otherwise."
FIZZ = ("Write a Python function fizzbuzz(n) that returns a list of strings for the numbers 1 to n: 'Fizz' for "
        "multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for multiples of both, the number itself otherwise. "
        "Include tests.")
PAL = "Write a Python function is_palindrome(s) that ignores case and non-alphanumeric characters, with tests."

PRIME_REF = "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n"
FIZZ_REF = ("def fizzbuzz(n):\n    return ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0"
            " else str(i) for i in range(1, n + 1)]\n")
PAL_REF = "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n"


def cases() -> list[tuple[str, str, str]]:
    """(task, reference implementation, asserts a right answer passes)."""
    out = [
        (DEMO, PRIME_REF, "assert [n for n in range(-3, 60) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]"),
        (FIZZ, FIZZ_REF, "assert fizzbuzz(15) == ['1', '2', 'Fizz', '4', 'Buzz', 'Fizz', '7', '8', 'Fizz', 'Buzz', '11', 'Fizz', '13', '14', 'FizzBuzz']"),
        (PAL, PAL_REF, "assert is_palindrome('Was it a car or a cat I saw?') and is_palindrome('') and not is_palindrome('ab')\n"
                       "assert is_palindrome('A man, a plan, a canal: Panama') and not is_palindrome('race a car')"),
    ]
    for i in range(1, 9):
        out.append((f"Write a Python function add_{i}(a, b) returning a + b + {i}, with tests.",
                    f"def add_{i}(a, b):\n    return a + b + {i}\n", f"assert add_{i}(1, 2) == {3 + i} and add_{i}(-5, 0) == {i - 5}"))
    return out


async def main_async(args: argparse.Namespace) -> dict:
    settings = CoderSettings()
    rows = []
    async with coder_bench(args.cpus) as bench:
        async def holds(code: str, test: str) -> bool:
            r = await bench.run(ExecRequest(code=code, test_code=test))
            return r.status == "ok" and r.exit_code == 0

        for k, (task, ref, test) in enumerate(cases()[: args.limit], 1):
            if args.case and k != args.case:
                continue
            bench.fresh()
            t0 = time.monotonic()
            job = AgentJob(task_id=f"case{k}", step_id=f"case{k}.1", agent="coder", text=task, deadline=time.time() + 4 * 3600)
            result = await CodeSolver(bench.engine, bench.run, settings).solve(job)
            chosen = next((a for a in result.attempts if a.chosen), None)
            checks = chosen.tests.splitlines() if chosen and chosen.tests else []
            right = [await holds(ref, c) for c in checks]
            row = {"task": task[:60], "status": result.status, "unverified": result.unverified,
                   "correct": bool(result.code) and await holds(result.code or "", test),
                   "checks": len(checks), "checks_correct": all(right), "wrong_checks": [c for c, ok in zip(checks, right, strict=True) if not ok],
                   "candidates": len(result.attempts), "seconds": round(time.monotonic() - t0, 1),
                   "sentence": result.answer.split("```\n\n", 1)[-1].split("\n\n")[0]}
            if not row["correct"]:
                row["code"] = result.code
            rows.append(row)
            print(row, flush=True)
    return {"n": len(rows), "done": sum(r["status"] == "done" for r in rows), "correct": sum(r["correct"] for r in rows),
            "checks_correct": sum(r["checks_correct"] for r in rows),
            "unverified": sum(r["unverified"] for r in rows),
            "wrong_plain_done": sum(r["status"] == "done" and not r["unverified"] and not r["correct"] for r in rows),
            "wrong_unverified": sum(r["unverified"] and not r["correct"] for r in rows),
            "seconds": [r["seconds"] for r in rows], "candidates": settings.candidates, "tests_first": settings.tests_first}


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the children too
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the demo, fizzbuzz, is_palindrome and add_1 only")
    ap.add_argument("--limit", type=int, default=11)
    ap.add_argument("--case", type=int, default=0, help="run only this case (1-based)")
    ap.add_argument("--model", default=None, help="roster model id (default: the coder role's model)")
    ap.add_argument("--small", action="store_true", help=f"the 0.5B model ({SMALL})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpus", default=None)
    args = ap.parse_args()
    if args.quick:
        args.limit = 4
    choose_model(SMALL if args.small else args.model, args.threads)
    emit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
