"""Latency of ``print(1)`` through code-sandbox (real nats-server, the service as a
subprocess, full isolation), with the warm pool off and on, next to plain
``/usr/bin/python3 -c 'print(1)'`` measured interleaved in the same run.

Requests are sequential with a short idle gap (``--gap-ms``, like an agent between
generations): that is when a warm pool refills. Goals: ≤ 60 ms p50 cold,
≤ 15 ms p50 warm. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from _common import emit, nats_server, pct

from shared import subjects
from shared.contracts import ExecRequest, HealthPing

REPO = Path(__file__).resolve().parent.parent
PLAIN = ["/usr/bin/python3", "-c", "print(1)"]


def start_service(url: str, warm: int, state: str) -> subprocess.Popen:
    env = {**os.environ, "SYNDICATE_NATS_URL": url, "SYNDICATE_STATE_DIR": state, "PYTHONPATH": str(REPO),
           "SYNDICATE_SANDBOX_WARM_POOL": str(warm), "SYNDICATE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "services.code_sandbox"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(nc: nats.NATS, timeout_s: float = 30.0) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            msg = await nc.request(subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), timeout=0.5)
            reply = json.loads(msg.data)
            if reply.get("service") == "code-sandbox" and reply.get("state") == "ready":
                return reply
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("code-sandbox did not become ready")


async def measure(url: str, warm: int, n: int, warmup: int, gap_s: float) -> dict:
    state = tempfile.TemporaryDirectory(prefix="bench-sandbox-")
    proc = start_service(url, warm, state.name)
    nc = await nats.connect(url)
    try:
        health = await wait_ready(nc)
        payload = ExecRequest(code="print(1)").model_dump_json().encode()
        box: list[float] = []
        plain: list[float] = []
        isolation = set()
        for i in range(n + warmup):
            await asyncio.sleep(gap_s)
            t = time.perf_counter()
            msg = await nc.request(subjects.SANDBOX_EXEC, payload, timeout=30)
            dt = (time.perf_counter() - t) * 1000
            reply = json.loads(msg.data)
            assert reply["status"] == "ok" and reply["stdout"] == "1\n", reply
            isolation.add(reply["isolation"])
            await asyncio.sleep(gap_s)
            t = time.perf_counter()
            out = subprocess.run(PLAIN, capture_output=True, check=True).stdout  # noqa: ASYNC221 - the baseline, timed alone
            dp = (time.perf_counter() - t) * 1000
            assert out == b"1\n"
            if i >= warmup:
                box.append(dt)
                plain.append(dp)
    finally:
        await nc.close()
        proc.terminate()
        proc.wait(15)
        state.cleanup()
    return {
        "warm_pool": warm, "n": n, "isolation": sorted(isolation), "tier": health["details"].get("isolation"),
        "p50_ms": round(pct(box, 50), 2), "p99_ms": round(pct(box, 99), 2),
        "plain_p50_ms": round(pct(plain, 50), 2), "plain_p99_ms": round(pct(plain, 99), 2),
        "ratio_p50": round(pct(box, 50) / pct(plain, 50), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100, help="measured requests per configuration (>= 50)")
    ap.add_argument("--warm", type=int, default=2, help="warm pool size for the warm configuration")
    ap.add_argument("--gap-ms", type=float, default=50.0, help="idle time before each request")
    ap.add_argument("--quick", action="store_true", help="50 requests")
    args = ap.parse_args()
    n = 50 if args.quick else max(50, args.n)
    with nats_server() as url:
        cold = asyncio.run(measure(url, 0, n, warmup=5, gap_s=args.gap_ms / 1000))
        print(json.dumps({"cold": cold}), file=sys.stderr)
        warm = asyncio.run(measure(url, args.warm, n, warmup=5, gap_s=args.gap_ms / 1000))
        print(json.dumps({"warm": warm}), file=sys.stderr)
    emit({
        "cold": cold, "warm": warm, "gap_ms": args.gap_ms,
        "goal_cold_p50_ms": 60, "goal_warm_p50_ms": 15,
        "goal_met": cold["p50_ms"] <= 60 and warm["p50_ms"] <= 15 and cold["isolation"] == ["full"] == warm["isolation"],
    })


if __name__ == "__main__":
    main()
