"""Continuous batching: aggregate generation tok/s with 1, 2, 4, 8 concurrent requests on one
engine vs **plain llama-cpp-python serving the same requests one after another** (its own
process, default settings, same model and threads: bench/_baseline.py), vs the same engine
one at a time, and vs the ceiling — bare ``llama_decode`` of N sequences per step (one
token each, logits for each, no sampling, no engine around it) on the engine's own context.
Goals: ``ratio_at_4`` (batched at 4 ÷ plain sequential) ≥ 2.0, ``fraction_of_ceiling``
(batched tok/s at 4 ÷ bare decode tok/s at 4 rows) ≥ 0.9; at 8 both are reported too.
``--stack`` adds ``stack_ratio_at_4``: 4 reason tasks submitted to a running stack
(`make run`) one after another ÷ all at once, wall time (goal ≥ 1.8).

The engine runs its default fast path (one llama_decode per step, repacked weights);
``--exact`` measures ``exact_batching`` instead, where ``identical`` (temperature-0 texts
equal one at a time vs batched, also for requests joining mid-generation) must hold. In
the fast path ``identical`` is reported, not required.

Each concurrency level is measured right after its baselines over the same requests
(all from empty caches), so machine-load drift hits all; the ceiling runs interleave 1 and
N sequences.

    python bench/batching.py [--quick] [--model PATH] [--max-tokens N] [--rounds N] [--levels 1,4,8] [--exact] [--stack]
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

PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring.",
    "Write a Python class Stack with push, pop and peek methods.",
    "Write a Python function that checks whether a string is a palindrome, ignoring case and spaces.",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Write a Python function that counts the words in a text file and returns the ten most common.",
    "Write a Python function that flattens a nested list of arbitrary depth.",
    "Write a Python function that parses an ISO date string and returns the weekday name.",
    "Write a Python function that computes the greatest common divisor of a list of integers.",
]


def requests(n: int, max_tokens: int) -> list[GenerationRequest]:
    return [GenerationRequest(messages=[{"role": "user", "content": p}], max_tokens=max_tokens, temperature=0.0,
                              request_id=f"r{i}") for i, p in enumerate(PROMPTS[:n])]


async def one_at_a_time(eng: Any, reqs: list[GenerationRequest]) -> tuple[list[GenerationResult], float]:
    out, seconds = [], 0.0
    for r in reqs:
        eng._reset_cache()
        t0 = time.perf_counter()
        out.append(await eng.generate(r))
        seconds += time.perf_counter() - t0
    return out, seconds


TIMES = ("worker_busy_s", "decode_s", "prefill_decode_s")


async def together(eng: Any, reqs: list[GenerationRequest]) -> tuple[list[GenerationResult], float]:
    eng._reset_cache()
    before = {k: eng.stats()[k] for k in TIMES}
    t0 = time.perf_counter()
    out = await asyncio.gather(*(eng.generate(r) for r in reqs))
    wall = time.perf_counter() - t0
    spent = {k: eng.stats()[k] - before[k] for k in TIMES}
    together.last = {  # type: ignore[attr-defined]
        "wall_s": wall, "prefill_decode_s": spent["prefill_decode_s"],
        "generate_decode_s": spent["decode_s"] - spent["prefill_decode_s"],
        "worker_python_s": spent["worker_busy_s"] - spent["decode_s"],  # admission, sampling, hand-offs
        "worker_idle_s": wall - spent["worker_busy_s"],  # waiting for the event loop / requests
    }
    return list(out), wall


def breakdown(parts: dict[str, float], tokens: int, bare_rate: float) -> dict[str, float]:
    """Where the batched run's wall time went, as fractions of it, next to what the bare
    decode ceiling would need for the same output tokens (``ideal_s``)."""
    wall = parts["wall_s"]
    out = {k: round(v / wall, 3) for k, v in parts.items() if k != "wall_s"}
    out["generate_vs_bare"] = round((tokens / bare_rate) / parts["generate_decode_s"], 3) if parts["generate_decode_s"] else 0.0
    return {"wall_s": round(wall, 2), "ideal_s": round(tokens / bare_rate, 2), **out}


async def staggered(eng: Any, reqs: list[GenerationRequest], gap_s: float) -> tuple[list[GenerationResult], float]:
    """Requests arriving ``gap_s`` apart: each joins while the earlier ones generate, its
    prompt prefilled in chunks between their decode steps."""
    eng._reset_cache()
    t0 = time.perf_counter()

    async def late(i: int, r: GenerationRequest) -> GenerationResult:
        await asyncio.sleep(i * gap_s)
        return await eng.generate(r)

    out = await asyncio.gather(*(late(i, r) for i, r in enumerate(reqs)))
    return list(out), time.perf_counter() - t0


def bare_decode_rate(eng: Any, n_seq: int, steps: int, context: int = 48) -> float:
    """Tokens/s of plain llama_decode steps of ``n_seq`` sequences (one token and its
    logits each), after a ``context``-token prompt per sequence. The engine must be idle."""
    llama = eng._llama
    b = llama.batch.batch
    toks = llama.model.tokenize(b"def add(a, b):\n    return a + b\n" * 8, add_bos=False, special=False)[:context]

    def put(n: int, seq: int, pos: int, tok: int, logits: bool) -> int:
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, logits
        b.seq_id[n][0] = seq
        return n + 1

    eng._reset_cache()
    n = 0
    for s in range(n_seq):
        for i, t in enumerate(toks):
            n = put(n, s, i, t, i == len(toks) - 1)
    llama.decode(n)

    def step(j: int) -> None:
        m = 0
        for s in range(n_seq):
            m = put(m, s, len(toks) + j, toks[j % len(toks)], True)
        llama.decode(m)

    step(0)  # warm-up: a new batch shape may allocate
    t0 = time.perf_counter()
    for j in range(1, steps + 1):
        step(j)
    dt = time.perf_counter() - t0
    eng._reset_cache()
    return n_seq * steps / dt


def latency(results: list[GenerationResult]) -> dict[str, float]:
    secs = [r.seconds for r in results]
    ttft = [r.ttft_s or 0.0 for r in results]
    return {"mean_s": round(statistics.mean(secs), 2), "max_s": round(max(secs), 2),
            "mean_ttft_s": round(statistics.mean(ttft), 2), "max_ttft_s": round(max(ttft), 2)}


def plain_sequential(peer: Any, reqs: list[GenerationRequest]) -> tuple[list[str], float, int]:
    """The peer serving ``reqs`` one after another: texts, seconds, tokens."""
    out = [peer.generate(r.messages, r.max_tokens) for r in reqs]
    return [o["text"] for o in out], sum(o["seconds"] for o in out), sum(o["tokens"] for o in out)


async def run(model: Path, *, levels: list[int], max_tokens: int, rounds: int, ceiling_steps: int,
              compare_slots1: bool, exact: bool = False) -> dict[str, Any]:
    from _baseline import PlainLlama

    from shared.llm.llama import EngineConfig, LlamaEngine

    cpus = sorted(os.sched_getaffinity(0))
    slots = max(levels)
    eng = LlamaEngine(EngineConfig(model_path=model, name="coder", cpus=cpus, n_ctx=1024, slots=slots,
                                   queue_limit=0, exact_batching=exact))
    rows: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
    identical = True
    mismatches: list[str] = []
    join: dict[str, Any] = {}
    ceiling: dict[int, list[float]] = {n: [] for n in sorted({1, *levels})}
    texts_single: dict[str, str] = {}
    peer = PlainLlama(model, threads=eng.threads, n_ctx=1024).__enter__()
    try:
        await eng.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
        for rnd in range(rounds):
            for c in levels:
                reqs = requests(c, max_tokens)
                _, plain_s, plain_tok = await asyncio.to_thread(plain_sequential, peer, reqs)
                seq_res, seq_s = await one_at_a_time(eng, reqs)
                bat_res, bat_s = await together(eng, reqs)
                seq_tok = sum(r.output_tokens for r in seq_res)
                bat_tok = sum(r.output_tokens for r in bat_res)
                same = [a.text == b.text for a, b in zip(seq_res, bat_res, strict=True)]
                if not all(same):
                    identical = False
                    mismatches += [reqs[i].request_id for i, ok in enumerate(same) if not ok]
                for r, res in zip(reqs, seq_res, strict=True):
                    texts_single[r.request_id] = res.text
                row = {
                    "round": rnd, "concurrency": c, "tokens": bat_tok,
                    "plain_sequential_tok_s": round(plain_tok / plain_s, 2),
                    "one_at_a_time_tok_s": round(seq_tok / seq_s, 2), "batched_tok_s": round(bat_tok / bat_s, 2),
                    "ratio": round((bat_tok / bat_s) / (plain_tok / plain_s), 3),
                    "engine_ratio": round((bat_tok / bat_s) / (seq_tok / seq_s), 3),
                    "one_at_a_time_latency": latency(seq_res), "batched_latency": latency(bat_res),
                    "identical": all(same), "parts": dict(together.last),  # type: ignore[attr-defined]
                }
                rows[c].append(row)
                print(row, file=sys.stderr)
                if c == max(levels) and rnd == 0:  # joins mid-generation, chunked prefill
                    long_prompt = reqs[0].model_copy(update={"messages": [{"role": "user", "content": (
                        PROMPTS[0] + " Follow this style guide:\n" + "- use clear names and type hints\n" * 40)}]})
                    st_reqs = [*reqs[1:], long_prompt]
                    base, _ = await one_at_a_time(eng, st_reqs)
                    st_res, st_s = await staggered(eng, st_reqs, gap_s=1.0)
                    st_same = [a.text == b.text for a, b in zip(base, st_res, strict=True)]
                    if not all(st_same):
                        identical = False
                        mismatches += [f"staggered-{i}" for i, ok in enumerate(st_same) if not ok]
                    join = {"staggered_identical": all(st_same), "staggered_tok_s": round(sum(r.output_tokens for r in st_res) / st_s, 2),
                            "staggered_latency": latency(st_res), "long_prompt_tokens": st_res[-1].input_tokens,
                            "long_prompt_ttft_s": round(st_res[-1].ttft_s or 0, 2)}
                    print(join, file=sys.stderr)
            for n in ceiling:  # 1, 2, 4, 8 then again: interleaved
                ceiling[n].append(bare_decode_rate(eng, n, ceiling_steps))
            for n in reversed(list(ceiling)):
                ceiling[n].append(bare_decode_rate(eng, n, ceiling_steps))
            print({f"bare_{n}": round(statistics.median(v), 2) for n, v in ceiling.items()}, file=sys.stderr)
        exact = eng.exact_batching
    finally:
        peer.__exit__(None, None, None)
        await eng.aclose()
    slots1: dict[str, Any] = {}
    if compare_slots1:
        one = LlamaEngine(EngineConfig(model_path=model, name="coder-1slot", cpus=cpus, n_ctx=1024, slots=1))
        try:
            reqs = requests(max(levels), max_tokens)
            res, secs = await one_at_a_time(one, reqs)
            slots1 = {
                "slots1_tok_s": round(sum(r.output_tokens for r in res) / secs, 2),
                "identical_vs_slots1": sum(r.text == texts_single[q.request_id] for q, r in zip(reqs, res, strict=True)) / len(reqs),
            }
        finally:
            await one.aclose()
    med = {c: statistics.median(r["ratio"] for r in rs) for c, rs in rows.items()}
    batched = {c: statistics.median(r["batched_tok_s"] for r in rs) for c, rs in rows.items()}
    bare = {n: statistics.median(v) for n, v in ceiling.items()}
    frac = {c: batched[c] / bare[c] for c in batched if c in bare}
    parts = {c: breakdown({k: statistics.median(r["parts"][k] for r in rs) for k in rs[0]["parts"]},
                          int(statistics.median(r["tokens"] for r in rs)), bare[c])
             for c, rs in rows.items() if c in bare}
    at = 4 if 4 in med else max(med)
    return {
        "bench": "batching", "model": model.name, "threads": eng.threads, "slots": slots, "rounds": rounds,
        "max_tokens": max_tokens, "exact_batching": exact, "load_average": os.getloadavg()[0],
        "ratio": {str(c): round(v, 3) for c, v in med.items()},
        "engine_ratio": {str(c): statistics.median(r["engine_ratio"] for r in rs) for c, rs in rows.items()},
        "batched_tok_s": {str(c): v for c, v in batched.items()},
        "plain_sequential_tok_s": {str(c): statistics.median(r["plain_sequential_tok_s"] for r in rs) for c, rs in rows.items()},
        "one_at_a_time_tok_s": {str(c): statistics.median(r["one_at_a_time_tok_s"] for r in rs) for c, rs in rows.items()},
        "latency": {str(c): rs[-1]["batched_latency"] for c, rs in rows.items()},
        "bare_decode_tok_s": {str(n): round(v, 2) for n, v in bare.items()},
        "fraction_of_ceiling_at": {str(c): round(v, 3) for c, v in frac.items()},
        "where_the_time_goes": {str(c): v for c, v in parts.items()},
        **slots1, **join,
        "mismatches": sorted(set(mismatches)),
        "ratio_at_4": round(med[at], 3), "ceiling_at_4": round(bare[at] / bare[1], 3),
        "fraction_of_ceiling": round(frac[at], 3),
        "ratio_at_8": round(med[8], 3) if 8 in med else None,
        "fraction_of_ceiling_at_8": round(frac[8], 3) if 8 in frac else None,
        "identical": identical,
    }


def stack_ratio(n: int = 4) -> dict[str, Any]:
    """``n`` reason tasks to the running stack one after another, then all at once."""
    import subprocess

    cli = [sys.executable, "-m", "syndicate.cli", "submit", "--kind", "reason", "--json"]
    qs = [f"In two sentences, why is the sky blue? (variant {i})" for i in range(n)]
    t0 = time.perf_counter()
    for q in qs:
        subprocess.run([*cli, q], check=True, capture_output=True, timeout=600)
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cli, q + " again"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for q in qs]
    if any(p.wait(timeout=600) for p in procs):
        raise RuntimeError("a task failed: is the stack running (make run)?")
    at_once = time.perf_counter() - t0
    return {"stack_one_by_one_s": round(one_by_one, 2), "stack_at_once_s": round(at_once, 2),
            "stack_ratio_at_4": round(one_by_one / at_once, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 and 4 concurrent, 48 tokens, one round")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the roster's coder model)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--no-slots1", action="store_true", help="skip the one-slot (repacked) engine comparison")
    p.add_argument("--levels", default=None, help="concurrency levels, e.g. 1,4,8")
    p.add_argument("--exact", action="store_true",
                   help="exact_batching=True: outputs equal one at a time (no repacked weights, <= 7 rows per call)")
    p.add_argument("--stack", action="store_true", help="also measure 4 reason tasks through the running stack")
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    model = a.model or ensure_model(load_roster().role("coder"))
    result = asyncio.run(run(
        model, levels=[int(x) for x in a.levels.split(",")] if a.levels else ([1, 4] if a.quick else [1, 2, 4, 8]),
        max_tokens=a.max_tokens or (48 if a.quick else 128),
        rounds=a.rounds or (1 if a.quick else 2), ceiling_steps=12 if a.quick else 24,
        compare_slots1=not a.no_slots1, exact=a.exact,
    ))
    if a.stack:
        result.update(stack_ratio(4))
    emit(result)


if __name__ == "__main__":
    main()
