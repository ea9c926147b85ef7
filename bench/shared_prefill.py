"""One prefill for many samples of one prompt: time to first token of ``n`` concurrent
samples of one prompt (the coder's candidates: one greedy, the rest sampled with their own
seeds; the reasoner's vote chains) ÷ time to first token of one request alone, on one
engine, from an empty cache each time. Goal: ``ttft_ratio`` (mean first-token time of
the n samples ÷ the lone request's) ≤ 1.2.

Next to it, the same n samples with sharing turned off (``share_min_tokens`` out of
reach, each sample evaluates the prompt in its own slot: the engine before issue 25), and
the prompt tokens each way evaluated (``stats()["prompt_tokens_evaluated"]``). Rounds
alternate the three runs so machine-load drift hits all.

``--kv-compare`` adds how the fork itself is done, measured on bare llama.cpp contexts:
the engine's layout (one KV stream per slot, ``kv_unified=false``: ``llama_memory_seq_cp``
copies the whole stream buffer at the next decode) against one unified KV buffer whose
cells the samples share (``kv_unified=true``: the copy is metadata only) — the first
decode after forking 3 sequences, and a decode step of 4 rows on the forked prefix.

    python bench/shared_prefill.py [--quick] [--model PATH] [--samples N] [--rounds N] [--max-tokens N] [--kv-compare]
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


def timed_decode(ctx: Any, batch: Any, rows: list[tuple[int, int, int]]) -> float:
    """Seconds of one llama_decode of (token, position, sequence) rows."""
    b = batch.batch
    for i, (tok, pos, seq) in enumerate(rows):
        b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
        b.logits[i] = len(rows) <= 16 or i == len(rows) - 1  # a prompt: the last row only
        b.seq_id[i][0] = seq
    b.n_tokens = len(rows)
    t0 = time.perf_counter()
    ctx.decode(batch)
    return time.perf_counter() - t0


def kv_compare(model: Path, *, threads: int, n_ctx: int = 2048, slots: int = 4, prompt_len: int = 400,
               steps: int = 16) -> dict[str, Any]:
    """Fork a ``prompt_len``-token prefix into ``slots - 1`` more sequences and decode
    ``slots`` rows per step, with one stream per sequence and with one unified buffer."""
    from llama_cpp import _internals

    from shared.llm.context import import_llama_cpp

    lc = import_llama_cpp()
    lm = _internals.LlamaModel(path_model=str(model), params=lc.llama_model_default_params(), verbose=False)
    text = (SYSTEM + " " + TASK + " ") * 20
    toks = lm.tokenize(text.encode(), add_bos=False, special=False)[:prompt_len]
    out: dict[str, Any] = {"kv_prompt_tokens": len(toks), "kv_n_ctx_per_seq": n_ctx}
    try:
        for unified in (False, True):
            cp = lc.llama_context_default_params()
            cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx * slots, 512, 512, slots
            cp.kv_unified = unified
            cp.n_threads = cp.n_threads_batch = threads
            cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
            ctx = _internals.LlamaContext(model=lm, params=cp, verbose=False)
            batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)

            def decode(rows: list[tuple[int, int, int]], ctx: Any = ctx, batch: Any = batch) -> float:
                return timed_decode(ctx, batch, rows)

            step_s, fork_s = [], []
            for rnd in range(3):
                ctx.kv_cache_clear()
                decode([(t, i, 0) for i, t in enumerate(toks)])
                for s in range(1, slots):
                    lc.llama_memory_seq_cp(ctx.memory, 0, s, -1, -1)
                pos = len(toks)
                first = decode([(toks[s], pos, s) for s in range(slots)])  # carries the copies
                times = [decode([(toks[(j + s) % len(toks)], pos + j, s) for s in range(slots)]) for j in range(1, steps)]
                if rnd:  # the first round allocates
                    step_s.append(statistics.median(times))
                    fork_s.append(first - statistics.median(times))
            key = "unified" if unified else "streams"
            out[f"kv_{key}_step_ms"] = round(1000 * statistics.median(step_s), 2)
            out[f"kv_{key}_fork_ms"] = round(1000 * max(0.0, statistics.median(fork_s)), 2)
            batch.close()
            ctx.close()
    finally:
        lm.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one round, 16 tokens per sample")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the roster's coder model)")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--kv-compare", action="store_true", help="also time the fork: KV streams vs a unified KV buffer")
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    model = a.model or ensure_model(load_roster().role("coder"))
    result = asyncio.run(run(model, n=a.samples, rounds=a.rounds or (1 if a.quick else 3),
                             max_tokens=a.max_tokens or (16 if a.quick else 48), slots=max(4, a.samples)))
    if a.kv_compare:
        result.update(kv_compare(model, threads=result["threads"]))
    emit(result)


if __name__ == "__main__":
    main()
