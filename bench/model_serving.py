"""A model request through the syndicate (gateway → NATS → an agent's engine) vs **plain
llama-cpp-python's own OpenAI server** (``python -m llama_cpp.server``, its own process,
its own defaults but the model file and the thread count), same requests, same run.

- one request at a time: time to first token (client side, streaming) and decode tok/s;
  goals ``ttft_ratio`` (server's TTFT ÷ ours) ≥ 0.95 and ``tok_s_ratio`` (ours ÷ server's)
  ≥ 0.95;
- 4 requests at once: aggregate tok/s (all output tokens ÷ wall time); the server serves
  one at a time (and, with its default ``interrupt_requests``, ends a streaming request
  still running when the next arrives: ``c4_empty`` counts those that got no token), the
  agent's engine batches them: goal ``c4_ratio`` ≥ 1.0 (on 2 cores the 4-row decode
  itself is only ~1.17× one row, README), and ``c4_ttft_ratio`` (the server's
  mean first-token time ÷ ours) shows the four started together instead of queueing.

The syndicate side is a real nats-server, one reasoner-agent holding the model (its own
cores, continuous batching, speculation off) and a gateway; the requests go to the model
by its roster name with the official ``openai`` client. Requests alternate between the two
servers so machine-load drift hits both. Tokens are counted with the model's tokenizer on
the streamed text. Heavy: run under ``flock /work/wt/heavy.lock``.

    python bench/model_serving.py [--quick] [--model qwen2_5-coder-0_5b] [--threads 2] [--max-tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from _baseline import scrubbed_env
from _common import emit, nats_server
from openai import OpenAI

from shared.llm.roster import cache_name, load_roster, model_cache_dir

REPO = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, model: str, timeout_s: float = 600) -> None:
    """Until ``GET url/models`` lists ``model``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            r = httpx.get(f"{url}/models", timeout=5)
            if r.status_code == 200 and model in [m["id"] for m in r.json()["data"]]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} never listed {model}")


def one(client: OpenAI, model: str, prompt: str, max_tokens: int, count: Any,
        allow_empty: bool = False) -> dict[str, float]:
    """One streamed chat completion: client-side TTFT, output tokens, decode tok/s. With
    ``allow_empty`` a stream cut off before its first token counts as 0 tokens (what
    llama_cpp.server's default ``interrupt_requests`` does to a request when another arrives)."""
    t0 = time.perf_counter()
    first = last = None
    pieces: list[str] = []
    for chunk in client.chat.completions.create(model=model, stream=True, temperature=0.0, max_tokens=max_tokens,
                                                messages=[{"role": "user", "content": prompt}]):
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            now = time.perf_counter()
            first = first or now
            last = now
            pieces.append(text)
    tokens = count("".join(pieces))
    if first is None or last is None:
        assert allow_empty, "no tokens"
        return {"ttft_s": time.perf_counter() - t0, "tokens": 0, "tok_s": 0.0, "end_s": time.perf_counter() - t0,
                "empty": 1}
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return {"ttft_s": first - t0, "tokens": tokens, "tok_s": rate, "end_s": last - t0, "empty": 0}


def concurrent(client: OpenAI, model: str, prompts: list[str], max_tokens: int, count: Any) -> dict[str, float]:
    """``len(prompts)`` requests at once: aggregate output tok/s over the wall time."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        runs = list(pool.map(lambda p: one(client, model, p, max_tokens, count, allow_empty=True), prompts))
    wall = time.perf_counter() - t0
    answered = [r for r in runs if not r["empty"]]
    return {"tok_s": sum(r["tokens"] for r in runs) / wall, "wall_s": wall, "empty": len(runs) - len(answered),
            "ttft_mean_s": statistics.mean(r["ttft_s"] for r in answered) if answered else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2_5-coder-0_5b", help="a roster model name")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, 64 tokens")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.max_tokens = 1, 64
    roster = load_roster()
    path = model_cache_dir() / cache_name(roster.models[args.model])
    if not path.is_file():
        sys.exit(f"{path} is missing: run `syndicate models fetch`")
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False)) if text else 0

    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[: args.threads])
    state = tempfile.mkdtemp(prefix="bench-models-")
    gw_port, peer_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    log = open(Path(state) / "services.log", "wb")  # noqa: SIM115 - closed with the processes
    with nats_server() as url:
        env = {**scrubbed_env(), "SYNDICATE_NATS_URL": url, "SYNDICATE_STATE_DIR": state, "PYTHONPATH": str(REPO),
               "SYNDICATE_LOG_LEVEL": "WARNING", "SYNDICATE_GATEWAY_PORT": str(gw_port)}
        agent_env = {**env, "SYNDICATE_CPUS": cpus, "OMP_NUM_THREADS": str(args.threads),
                     "SYNDICATE_MODEL_REASONER_MODEL": args.model, "SYNDICATE_MODEL_REASONER_SLOTS": "4",
                     "SYNDICATE_MODEL_REASONER_SPECULATIVE": "off"}
        procs.append(subprocess.Popen([sys.executable, "-m", "services.reasoner_agent"], env=agent_env, cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT))
        # The peer as its users run it: its own process and defaults, the model and threads given.
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--n_threads", str(args.threads),
             "--n_threads_batch", str(args.threads), "--host", "127.0.0.1", "--port", str(peer_port)],
            env=scrubbed_env(), stdout=log, stderr=subprocess.STDOUT))
        try:
            ours_url, peer_url = f"http://127.0.0.1:{gw_port}/v1", f"http://127.0.0.1:{peer_port}/v1"
            wait_for(ours_url, args.model)
            wait_for(peer_url, str(path))
            ours = OpenAI(base_url=ours_url, api_key="x", max_retries=0, timeout=600)
            peer = OpenAI(base_url=peer_url, api_key="x", max_retries=0, timeout=600)
            sides = {"syndicate": (ours, args.model), "llama_cpp_server": (peer, str(path))}
            for client, model in sides.values():  # warm-up: first-use costs out of the numbers
                one(client, model, "Say hello.", 8, count)
            single: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
            c4: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
            for r in range(args.rounds):
                for i, prompt in enumerate(PROMPTS[:3]):
                    order = list(sides) if (r + i) % 2 == 0 else list(sides)[::-1]
                    for name in order:
                        client, model = sides[name]
                        single[name].append(one(client, model, f"({r}.{i}) {prompt}", args.max_tokens, count))
                batch = [f"({r}.c{j}) {p}" for j, p in enumerate(PROMPTS[3:7])]
                for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                    client, model = sides[name]
                    c4[name].append(concurrent(client, model, batch, args.max_tokens, count))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(x[key] for x in runs)

    s, b = "syndicate", "llama_cpp_server"
    result: dict[str, Any] = {
        "model": args.model, "threads": args.threads, "max_tokens": args.max_tokens, "rounds": args.rounds,
        "ttft_s": {k: round(med(v, "ttft_s"), 3) for k, v in single.items()},
        "tok_s": {k: round(med(v, "tok_s"), 2) for k, v in single.items()},
        "tokens": {k: round(med(v, "tokens"), 1) for k, v in single.items()},
        "c4_tok_s": {k: round(med(v, "tok_s"), 2) for k, v in c4.items()},
        "c4_ttft_mean_s": {k: round(med(v, "ttft_mean_s"), 3) for k, v in c4.items()},
        # requests of the 4 that got no token at all (the server cut them off), over all rounds
        "c4_empty": {k: sum(int(x["empty"]) for x in v) for k, v in c4.items()},
        "c4_requests": {k: 4 * len(v) for k, v in c4.items()},
    }
    result["ttft_ratio"] = round(result["ttft_s"][b] / result["ttft_s"][s], 3)
    result["tok_s_ratio"] = round(result["tok_s"][s] / result["tok_s"][b], 3)
    result["c4_ratio"] = round(result["c4_tok_s"][s] / result["c4_tok_s"][b], 3)
    result["c4_ttft_ratio"] = round(result["c4_ttft_mean_s"][b] / result["c4_ttft_mean_s"][s], 3)
    result["goal_met"] = result["ttft_ratio"] >= 0.95 and result["tok_s_ratio"] >= 0.95 and result["c4_ratio"] >= 1.0
    result["uptime"] = Path("/proc/loadavg").read_text().split()[:3]
    emit(result)


if __name__ == "__main__":
    main()
