"""Generation throughput through the bus ÷ plain llama-cpp-python as its users run it
(``Llama.create_chat_completion(stream=True)`` in its own process, environment scrubbed of
OMP_* and SYNDICATE_*: the binding's and OpenMP's defaults), same model file, same thread
count, greedy, same prompts. Goal: ``ratio`` ≥ 0.97.

Three paths: ``raw`` (that peer, bench/_baseline.py); ``engine`` (``LlamaEngine.generate``
called directly, in this process with this process's environment, as an agent runs it);
``bus`` (a request over a real nats-server to a FastStream handler that runs the engine and
streams every token back as a task event the client consumes — what an agent does).

Rounds alternate the paths and each request starts from an empty KV cache, so both pay
the same prompt evaluation and machine-load drift hits both. ``measure_path`` measures any
path given as an async callable (request -> output token count): the through-the-bus
variant plugs in there.

    python bench/engine_overhead.py [--quick] [--model PATH] [--rounds N] [--max-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import emit

from shared.llm.base import GenerationRequest

PathCall = Callable[[GenerationRequest], Awaitable[int]]

PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring.",
    "Explain in three sentences what a mutex is and when to use one.",
    "Write a Python class Stack with push, pop and peek methods.",
]


async def measure_path(call: PathCall, requests: list[GenerationRequest]) -> dict[str, float]:
    """Run ``requests`` through ``call`` one after another; tokens, seconds and tok/s."""
    tokens = 0
    t0 = time.perf_counter()
    for req in requests:
        tokens += await call(req)
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds if seconds else 0.0}


def engine_call(engine: Any) -> PathCall:
    """LlamaEngine.generate with a streaming callback, from an empty cache."""

    async def call(req: GenerationRequest) -> int:
        engine._reset_cache()
        pieces: list[str] = []

        async def on_token(p: str) -> None:
            pieces.append(p)

        r = await engine.generate(req, on_token)
        return r.output_tokens

    return call


def bus_call(engine: Any, url: str) -> tuple[PathCall, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """The engine behind the project's bus wiring: request in, token events out."""
    import nats

    from shared.bus import make_broker
    from shared.contracts import TaskEvent
    from shared.service import publish_token
    from shared.settings import Settings
    from shared.subjects import task_events

    settings = Settings(nats_url=url)
    service = make_broker("bench-agent", settings)
    client: dict[str, Any] = {}

    @service.subscriber("bench.generate")
    async def handle(req: GenerationRequest) -> int:
        engine._reset_cache()

        async def on_token(piece: str) -> None:
            await publish_token(service, TaskEvent(task_id=req.request_id, type="token", text=piece))

        return (await engine.generate(req, on_token)).output_tokens

    async def start() -> None:
        await service.start()
        client["nc"] = await nats.connect(url)

    async def stop() -> None:
        await client["nc"].close()
        await service.stop()

    async def call(req: GenerationRequest) -> int:
        nc = client["nc"]
        rid = f"bench-{time.perf_counter_ns()}"
        got: list[bytes] = []

        async def on_event(msg: Any) -> None:
            got.append(msg.data)

        sub = await nc.subscribe(task_events(rid), cb=on_event)
        reply = await nc.request("bench.generate", req.model_copy(update={"request_id": rid}).model_dump_json().encode(), timeout=600)
        await nc.flush()
        await sub.unsubscribe()
        assert got, "no token events arrived"
        return int(reply.data)

    return call, start, stop


def raw_call(peer: Any) -> PathCall:
    """Plain llama-cpp-python in its own process (it times its own generation)."""

    async def call(req: GenerationRequest) -> int:
        return int((await asyncio.to_thread(peer.generate, req.messages, req.max_tokens))["tokens"])

    return call


async def compare(paths: dict[str, PathCall], requests: list[GenerationRequest], rounds: int) -> dict[str, Any]:
    """Alternate the paths for ``rounds``; per path the median tok/s over rounds."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for i in range(rounds):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            results[name].append(await measure_path(paths[name], requests))
        print({n: round(r[-1]["tok_s"], 2) for n, r in results.items()}, file=sys.stderr)
    return {name: statistics.median(r["tok_s"] for r in rs) for name, rs in results.items()} | {
        "tokens": {name: rs[-1]["tokens"] for name, rs in results.items()}
    }


async def run(model: Path, rounds: int, max_tokens: int, n_prompts: int) -> dict[str, Any]:
    from _baseline import PlainLlama

    from shared.llm.llama import EngineConfig, LlamaEngine

    cpus = sorted(os.sched_getaffinity(0))
    engine = LlamaEngine(EngineConfig(model_path=model, name="bench", cpus=cpus, n_ctx=2048))
    peer = PlainLlama(model, threads=engine.threads, n_ctx=2048).__enter__()
    requests = [
        GenerationRequest(messages=[{"role": "user", "content": p}], max_tokens=max_tokens, temperature=0.0)
        for p in PROMPTS[:n_prompts]
    ]
    from _common import nats_server

    with nats_server() as url:
        bus, start, stop = bus_call(engine, url)
        await start()
        try:
            warm = [GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4)]
            for path in (engine_call(engine), raw_call(peer), bus):
                await measure_path(path, warm)
            res = await compare({"raw": raw_call(peer), "engine": engine_call(engine), "bus": bus}, requests, rounds)
        finally:
            await stop()
            await engine.aclose()
            peer.__exit__(None, None, None)
    return {
        "bench": "engine_overhead", "model": model.name, "threads": engine.threads, "rounds": rounds,
        "raw_tok_s": round(res["raw"], 2), "engine_tok_s": round(res["engine"], 2), "bus_tok_s": round(res["bus"], 2),
        "ratio": round(res["bus"] / res["raw"], 3), "engine_ratio": round(res["engine"] / res["raw"], 3),
        "tokens": res["tokens"], "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 prompt, 3 rounds, 64 tokens")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the roster's coder model)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    model = a.model or ensure_model(load_roster().role("coder"))
    rounds = a.rounds or (3 if a.quick else 5)
    max_tokens = a.max_tokens or (64 if a.quick else 128)
    emit(asyncio.run(run(model, rounds, max_tokens, 1 if a.quick else len(PROMPTS))))


if __name__ == "__main__":
    main()
