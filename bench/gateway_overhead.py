"""Added latency of the OpenAI-compatible gateway over submitting the same task straight
to the bus (what ``syndicate submit`` does), in the same run: a real nats-server, the real
router, reasoner-agent and gateway processes, the agent answering from a scripted engine
at once (so the numbers are the plumbing, not a model). Goal: ≤ 5 ms p50 added per task."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from _common import emit, nats_server, pct

from shared import subjects
from shared.contracts import TaskEvent, TaskSubmit, new_id
from syndicate.cli.connect import health_replies

REPO = Path(__file__).resolve().parent.parent


async def direct(url: str, n: int) -> list[float]:
    """Submit like the CLI: subscribe to the events, publish, wait for the result event."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    out: list[float] = []
    for _ in range(n):
        task = TaskSubmit(task_id=new_id("t-"), kind="reason", text="Who are you?")
        done = asyncio.get_running_loop().create_future()

        async def cb(msg, done=done) -> None:  # type: ignore[no-untyped-def]
            event = TaskEvent.model_validate_json(msg.data)
            if event.type == "result" and not done.done():
                done.set_result(event.result)

        t = time.perf_counter()
        sub = await nc.subscribe(subjects.task_events(task.task_id), cb=cb)
        await js.publish(subjects.TASK_SUBMIT, task.model_dump_json().encode(), stream=subjects.TASKS_STREAM,
                         headers={"Nats-Msg-Id": task.task_id})
        result = await asyncio.wait_for(done, 30)
        out.append((time.perf_counter() - t) * 1000)
        assert result.status == "done"
        await sub.unsubscribe()
    await nc.close()
    return out


def via_gateway(base: str, n: int, stream: bool) -> list[float]:
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "Who are you?"}], "stream": stream}
    out: list[float] = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            t = time.perf_counter()
            if stream:
                with client.stream("POST", f"{base}/chat/completions", json=body) as r:
                    lines = [line for line in r.iter_lines() if line]
                assert lines[-1] == "data: [DONE]"
            else:
                r = client.post(f"{base}/chat/completions", json=body)
                assert r.status_code == 200, r.text
            out.append((time.perf_counter() - t) * 1000)
    return out


def wait_http(url: str, timeout_s: float = 30) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gateway not ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, names: set[str], timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        replies = asyncio.run(health_replies(url, wait_s=0.3))
        if names <= {r.service for r in replies if r.state == "ready"}:
            return
    raise TimeoutError(f"not ready: {names}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="60 tasks each")
    args = ap.parse_args()
    n = 60 if args.quick else args.n
    warm = max(5, n // 10)
    state = tempfile.mkdtemp(prefix="bench-gw-")
    script = Path(state) / "replies.json"
    script.write_text(json.dumps(["I am the syndicate's reasoner."]))
    port = free_port()
    with nats_server() as url:
        env = {**os.environ, "SYNDICATE_NATS_URL": url, "SYNDICATE_STATE_DIR": state, "SYNDICATE_ROUTER_CLASSIFIER": "0",
               "SYNDICATE_GATEWAY_PORT": str(port), "PYTHONPATH": str(REPO), "SYNDICATE_LOG_LEVEL": "WARNING",
               "SYNDICATE_ENGINE_SCRIPT": str(script)}
        procs = [subprocess.Popen([sys.executable, "-m", m], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
                 for m in ("services.router", "services.reasoner_agent", "services.gateway")]
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base)
            wait_ready(url, {"router", "reasoner-agent"})  # streams and consumers exist once they answer health
            asyncio.run(direct(url, warm))
            via_gateway(f"{base}/v1", warm, False)
            bus = asyncio.run(direct(url, n))
            gw = via_gateway(f"{base}/v1", n, False)
            gw_stream = via_gateway(f"{base}/v1", n, True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    result = {
        "direct_p50_ms": round(pct(bus, 50), 2), "direct_p99_ms": round(pct(bus, 99), 2),
        "gateway_p50_ms": round(pct(gw, 50), 2), "gateway_p99_ms": round(pct(gw, 99), 2),
        "gateway_stream_p50_ms": round(pct(gw_stream, 50), 2),
        "added_p50_ms": round(pct(gw, 50) - pct(bus, 50), 2),
        "ratio_p50": round(pct(gw, 50) / pct(bus, 50), 3), "n": n,
    }
    result["goal_met"] = result["added_p50_ms"] <= 5.0
    emit(result)


if __name__ == "__main__":
    main()
