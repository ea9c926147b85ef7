"""One prefill for many samples of one prompt: time to first token of ``n`` concurrent
samples of one prompt (the coder's candidates: one greedy, the rest sampled with their own
seeds; the reasoner's vote chains) ÷ time to first token of one request alone, on one
engine, from an empty cache each time. Goal: ``ttft_ratio`` (mean first-token time of
the n samples ÷ the lone request's) ≤ 1.2.

Next to it, the same n samples with sharing turned off (``share_min_tokens`` out of
reach, each sample evaluates the prompt in its own slot: the engine before issue 25), and
the prompt tokens each way evaluated (``stats()["prompt_tokens_evaluated"]``). Rounds
alternate the three runs so machine-load drift hits all.

    python bench/shared_prefill.py [--quick] [--model PATH] [--samples N] [--rounds N] [--max-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit

from shared.llm.base import GenerationRequest, GenerationResult

SYSTEM = ("You are a careful Python programmer. Answer with one complete Python module in a "
          "```python fenced block: the function asked for, with type hints and a docstring, "
          "and nothing else. Handle edge cases the task mentions.")
TASK = ("Write a function is_prime(n: int) -> bool that returns True when n is a prime number "
        "and False otherwise. Negative numbers, 0 and 1 are not prime. It must be fast enough "
        "for n up to 10**12: check divisors only up to the square root, skipping even numbers "
        "after 2. For example: is_prime(2) -> True, is_prime(15) -> False, is_prime(7919) -> True.")


def samples(n: int, max_tokens: int) -> list[GenerationRequest]:
    """One greedy request and ``n - 1`` sampled ones, as the coder asks for candidates."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    return [GenerationRequest(messages=msgs, max_tokens=max_tokens, temperature=0.0 if i == 0 else 0.8,
                              seed=None if i == 0 else 1000 + i, request_id=f"s{i}") for i in range(n)]


async def run_batch(eng: Any, reqs: list[GenerationRequest]) -> tuple[list[GenerationResult], float, int]:
    """``reqs`` at once from an empty cache: results, wall seconds, prompt tokens evaluated."""
    eng._reset_cache()
    before = eng.stats()["prompt_tokens_evaluated"]
    t0 = time.perf_counter()
    out = await asyncio.gather(*(eng.generate(r) for r in reqs))
    wall = time.perf_counter() - t0
    return list(out), wall, eng.stats()["prompt_tokens_evaluated"] - before


async def run(model: Path, *, n: int, rounds: int, max_tokens: int, slots: int) -> dict[str, Any]:
    from shared.llm.llama import EngineConfig, LlamaEngine

    cpus = sorted(os.sched_getaffinity(0))
    base = {"model_path": model, "cpus": cpus, "n_ctx": 2048, "slots": slots, "queue_limit": n}
    shared = LlamaEngine(EngineConfig(name="shared", **base))  # type: ignore[arg-type]
    unshared = LlamaEngine(EngineConfig(name="unshared", share_min_tokens=10**9, **base))  # type: ignore[arg-type]
    rows: list[dict[str, Any]] = []
    try:
        warm = GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        await shared.generate(warm)
        await unshared.generate(warm)
        for rnd in range(rounds):
            reqs = samples(n, max_tokens)
            (one,), one_wall, one_eval = await run_batch(shared, reqs[:1])
            many, many_wall, many_eval = await run_batch(shared, reqs)
            plain, plain_wall, plain_eval = await run_batch(unshared, reqs)
            ttft = [r.ttft_s or 0.0 for r in many]
            plain_ttft = [r.ttft_s or 0.0 for r in plain]
            row = {
                "round": rnd, "prompt_tokens": one.input_tokens, "one_ttft_s": round(one.ttft_s or 0.0, 3),
                "samples_ttft_mean_s": round(statistics.mean(ttft), 3), "samples_ttft_max_s": round(max(ttft), 3),
                "unshared_ttft_mean_s": round(statistics.mean(plain_ttft), 3),
                "ttft_ratio": round(statistics.mean(ttft) / (one.ttft_s or 1e-9), 3),
                "ttft_ratio_max": round(max(ttft) / (one.ttft_s or 1e-9), 3),
                "unshared_ttft_ratio": round(statistics.mean(plain_ttft) / (one.ttft_s or 1e-9), 3),
                "samples_wall_s": round(many_wall, 2), "unshared_wall_s": round(plain_wall, 2), "one_wall_s": round(one_wall, 2),
                "prompt_evaluated": {"one": one_eval, "samples": many_eval, "unshared": plain_eval},
                "greedy_identical": many[0].text == one.text,
            }
            rows.append(row)
            print(row, file=sys.stderr)
    finally:
        await shared.aclose()
        await unshared.aclose()

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    return {
        "bench": "shared_prefill", "model": model.name, "threads": shared.threads, "slots": slots, "samples": n,
        "rounds": rounds, "max_tokens": max_tokens, "load_average": os.getloadavg()[0],
        "prompt_tokens": rows[-1]["prompt_tokens"], "one_ttft_s": med("one_ttft_s"),
        "samples_ttft_mean_s": med("samples_ttft_mean_s"), "unshared_ttft_mean_s": med("unshared_ttft_mean_s"),
        "unshared_ttft_ratio": med("unshared_ttft_ratio"), "ttft_ratio_max": med("ttft_ratio_max"),
        "samples_wall_s": med("samples_wall_s"), "unshared_wall_s": med("unshared_wall_s"),
        "prompt_evaluated": rows[-1]["prompt_evaluated"],
        "greedy_identical": all(r["greedy_identical"] for r in rows),
        "ttft_ratio": med("ttft_ratio"), "goal_ttft_ratio": 1.2, "met": med("ttft_ratio") <= 1.2,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one round, 16 tokens per sample")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the roster's coder model)")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    model = a.model or ensure_model(load_roster().role("coder"))
    emit(asyncio.run(run(model, n=a.samples, rounds=a.rounds or (1 if a.quick else 3),
                         max_tokens=a.max_tokens or (16 if a.quick else 48), slots=max(4, a.samples))))


if __name__ == "__main__":
    main()
