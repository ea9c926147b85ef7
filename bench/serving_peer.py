"""The serving peer side by side: the same chat streams through the gateway (a model served
as a model: a plain generation on an agent's engine) and through llama.cpp's own
``llama-server --parallel 4`` (its own process, its users' defaults), same model file, same
cores and threads, one after the other in one run.

For each peer: 1 stream (the prompts one at a time) and 4 concurrent streams (the prompts
four at once), every request ``stream: true`` over the OpenAI chat API at temperature 0.
Reported per peer: aggregate generated tok/s (tokens ÷ wall time of the level) and time to
first token (request sent → first content delta). Goals: gateway ÷ llama-server aggregate
tok/s at 4 streams ≥ 0.95; gateway time to first token at 1 stream ≤ 1.1 × llama-server's.

Every round uses prompts no earlier round sent (a peer's prompt cache must not answer a
repeated prompt); both peers get the same ones. Rounds alternate which peer goes first, so
load drift on a shared machine hits both.

llama-server is built once per machine from the wheel's llama.cpp source and flags
(``make llama-server``, infra/scripts/llama-server.sh); this bench builds it when missing.

    python bench/serving_peer.py [--quick] [--model PATH] [--role coder] [--max-tokens N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _baseline import scrubbed_env
from _common import emit, nats_server

REPO = Path(__file__).resolve().parent.parent
TASKS = [
    "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring and examples.",
    "Write a Python class Stack with push, pop and peek methods, each with a docstring.",
    "Write a Python function that checks whether a string is a palindrome, ignoring case and spaces; explain it.",
    "Write a Python function that merges two sorted lists into one sorted list, then explain its complexity.",
    "Write a Python function that counts the words in a text file and returns the ten most common, with comments.",
    "Write a Python function that flattens a nested list of arbitrary depth, with a docstring and examples.",
    "Write a Python function that parses an ISO date string and returns the weekday name; explain each step.",
    "Write a Python function that computes the greatest common divisor of a list of integers, with tests.",
]
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def prompts(round_no: int, level: int, n: int) -> list[str]:
    """``n`` prompts no other (round, level) sends: the task, then a name to use."""
    out = []
    for i in range(n):
        k = (round_no * 2 + (level > 1)) * n + i
        out.append(f"{TASKS[k % len(TASKS)]} Call the main function or class {NAMES[k % len(NAMES)]}_{k}.")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class Peer:
    name: str
    base: str  # the OpenAI API root, e.g. http://127.0.0.1:8080/v1
    model: str  # the model name requests carry


def llama_server_binary() -> Path:
    """The cached llama-server of this host (built on first use, several minutes)."""
    out = subprocess.run(["bash", str(REPO / "infra/scripts/llama-server.sh")], check=True, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)})
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def llama_server(model: Path, cpus: list[int], *, slots: int, n_ctx: int, log: Path) -> Iterator[Peer]:
    """llama-server as its users run it: its own process, defaults (OpenMP's, its sampler,
    its prompt cache), ``--parallel`` slots sharing ``slots × n_ctx`` tokens of KV cache,
    pinned to ``cpus`` with one thread per core."""
    binary = llama_server_binary()
    port = free_port()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--parallel", str(slots),
           "-c", str(slots * n_ctx), "-t", str(len(cpus)), "-tb", str(len(cpus))]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=scrubbed_env(), stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield Peer("llama_server", f"http://127.0.0.1:{port}/v1", model.stem)
    finally:
        stop([proc])


@contextmanager
def gateway(model: Path, cpus: list[int], *, role: str, slots: int, n_ctx: int, logs: Path) -> Iterator[Peer]:
    """The syndicate as ``make run`` starts it, reduced to what a model request touches: a
    real nats-server, the agent of ``role`` holding ``model`` on ``cpus`` (one thread per
    core, ``slots`` slots of ``n_ctx``) and the gateway. Requests name the model itself
    (its roster name), not the agent."""
    from shared import registry

    service = next(s for s in registry.SERVICES if s.role == role)
    state = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    port = free_port()
    with nats_server() as url:
        up = role.upper()
        env = {**os.environ, "SYNDICATE_NATS_URL": url, "SYNDICATE_STATE_DIR": str(state), "PYTHONPATH": str(REPO),
               "SYNDICATE_LOG_LEVEL": "WARNING", "SYNDICATE_GATEWAY_PORT": str(port), "OMP_NUM_THREADS": str(len(cpus)),
               "SYNDICATE_CPUS": ",".join(map(str, cpus)), f"SYNDICATE_MODEL_{up}_PATH": str(model),
               f"SYNDICATE_MODEL_{up}_SLOTS": str(slots), f"SYNDICATE_MODEL_{up}_N_CTX": str(n_ctx)}
        env.pop("OMP_WAIT_POLICY", None)  # the agent owns its cores: OpenMP's default, as under the supervisor
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for module in (service.module, "services.gateway"):
                with (logs / f"{module.split('.')[-1]}.log").open("wb") as out:
                    procs.append(subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO,
                                                  stdout=out, stderr=subprocess.STDOUT))
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health", procs[-1])
            name = served_model(base, service.name, procs)
            yield Peer("gateway", f"{base}/v1", name)
        finally:
            stop(procs)


def served_model(base: str, service: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 300) -> str:
    """The name of the model ``service`` serves, from the gateway's /v1/models, once it does."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
        for card in httpx.get(f"{base}/v1/models", timeout=5).json()["data"]:
            if card.get("kind") == "model" and service in card.get("served_by", []):
                return str(card["id"])
        time.sleep(0.5)
    raise TimeoutError(f"{service} serves no model after {timeout_s:.0f} s")


async def stream_chat(client: httpx.AsyncClient, peer: Peer, prompt: str, max_tokens: int) -> dict[str, float]:
    """One streamed chat completion: its time to first content, seconds, tokens."""
    body = {"model": peer.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft: float | None = None
    chunks, usage = 0, None
    async with client.stream("POST", f"{peer.base}/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{peer.name}: HTTP {r.status_code}: {(await r.aread()).decode()[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise RuntimeError(f"{peer.name}: {data['error']}")
            if data.get("usage"):
                usage = data["usage"]
            for choice in data.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    tokens = int(usage["completion_tokens"]) if usage and usage.get("completion_tokens") else chunks
    return {"ttft_s": ttft if ttft is not None else seconds, "seconds": seconds, "tokens": tokens}


async def level(peer: Peer, texts: list[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    """The prompts ``concurrency`` at a time: aggregate tok/s, time to first token."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=600)) as client:
        t0 = time.perf_counter()
        out: list[dict[str, float]] = []
        for i in range(0, len(texts), concurrency):
            out += await asyncio.gather(*(stream_chat(client, peer, p, max_tokens) for p in texts[i:i + concurrency]))
        wall = time.perf_counter() - t0
    tokens = sum(int(o["tokens"]) for o in out)
    return {"tok_s": tokens / wall, "tokens": tokens, "wall_s": wall,
            "ttft_s": statistics.median(o["ttft_s"] for o in out), "max_ttft_s": max(o["ttft_s"] for o in out)}


async def measure(peers: list[Peer], *, rounds: int, max_tokens: int, n_one: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {p.name: {"1": [], "4": []} for p in peers}
    for peer in peers:  # warm-up: the first request pays loading and allocation
        await level(peer, ["Say hello."], 1, 8)
    for rnd in range(rounds):
        order = peers if rnd % 2 == 0 else list(reversed(peers))
        for peer in order:
            one = await level(peer, prompts(rnd, 1, n_one), 1, max_tokens)
            four = await level(peer, prompts(rnd, 4, 4), 4, max_tokens)
            rows[peer.name]["1"].append(one)
            rows[peer.name]["4"].append(four)
            print({"round": rnd, "peer": peer.name, "1": _round(one), "4": _round(four)}, file=sys.stderr, flush=True)
    return rows


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def summary(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over rounds of one peer's levels."""
    return {
        f"{key}_at_{c}": round(statistics.median(r[key] for r in rows[c]), 3)
        for c in ("1", "4") for key in ("tok_s", "ttft_s")
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one round, 2 single streams, 48 tokens")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the role's roster model)")
    p.add_argument("--role", default="coder", help="the agent role whose engine serves the model (default coder)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--n-ctx", type=int, default=4096, help="context per slot, both peers (default 4096)")
    p.add_argument("--only", choices=("llama_server", "gateway"), default=None, help="measure one peer (no ratio)")
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    model = (a.model or ensure_model(load_roster().role(a.role))).resolve()
    cpus = sorted(os.sched_getaffinity(0))
    slots = 4
    rounds = a.rounds or (1 if a.quick else 3)
    max_tokens = a.max_tokens or (48 if a.quick else 128)
    n_one = 2 if a.quick else 4
    logs = Path(tempfile.mkdtemp(prefix="bench-serving-logs-"))
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        peers: list[Peer] = []
        if a.only != "gateway":
            peers.append(stack.enter_context(llama_server(model, cpus, slots=slots, n_ctx=a.n_ctx,
                                                          log=logs / "llama-server.log")))
        if a.only != "llama_server":
            peers.append(stack.enter_context(gateway(model, cpus, role=a.role, slots=slots, n_ctx=a.n_ctx, logs=logs)))
        rows = asyncio.run(measure(peers, rounds=rounds, max_tokens=max_tokens, n_one=n_one))
    result: dict[str, Any] = {
        "bench": "serving_peer", "model": model.name, "role": a.role, "cpus": cpus, "threads": len(cpus),
        "slots": slots, "n_ctx_per_slot": a.n_ctx, "rounds": rounds, "max_tokens": max_tokens,
        "single_streams_per_round": n_one, "seconds": round(time.perf_counter() - started, 1), "logs": str(logs),
        **{name: summary(r) for name, r in rows.items()},
    }
    if "gateway" in rows and "llama_server" in rows:
        gw, ls = result["gateway"], result["llama_server"]
        result["tok_s_ratio_at_4"] = round(gw["tok_s_at_4"] / ls["tok_s_at_4"], 3)
        result["ttft_ratio_at_1"] = round(gw["ttft_s_at_1"] / ls["ttft_s_at_1"], 3)
        result["goal_tok_s_at_4"] = result["tok_s_ratio_at_4"] >= 0.95
        result["goal_ttft_at_1"] = result["ttft_ratio_at_1"] <= 1.1
        result["goal_met"] = result["goal_tok_s_at_4"] and result["goal_ttft_at_1"]
    result["uptime"] = uptime()
    emit(result)


if __name__ == "__main__":
    main()
