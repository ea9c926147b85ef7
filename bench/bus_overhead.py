"""Added latency of one request/reply hop through the project's bus wiring (FastStream
broker with trace propagation and error replies, typed contracts) vs raw nats-py, against
the same real nats-server in the same run. Goal: ≤ 0.5 ms p50 and ≤ 3 ms p99 added."""

from __future__ import annotations

import argparse
import asyncio
import time

import nats
from _common import emit, nats_server, pct

from shared import subjects
from shared.bus import make_broker, request
from shared.contracts import ExecRequest, ExecResult
from shared.settings import Settings


async def measure(url: str, n: int, warmup: int, telemetry: bool = True) -> dict:
    # Raw nats-py: responder and requester on their own connections.
    responder = await nats.connect(url)
    requester = await nats.connect(url)

    async def raw_handler(msg):  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    await responder.subscribe("bench.raw", queue="q", cb=raw_handler)
    await responder.flush()  # the subscription reaches the server before the first request
    raw: list[float] = []
    for i in range(n + warmup):
        t = time.perf_counter()
        await requester.request("bench.raw", b'{"code":"print(1)"}', timeout=5)
        if i >= warmup:
            raw.append((time.perf_counter() - t) * 1000)

    # The project's wiring: a service broker answering a typed contract, a client broker
    # using shared.bus.request (validation both ways, trace context in headers).
    settings = Settings(nats_url=url)
    service = make_broker("bench-service", settings, telemetry=telemetry)

    @service.subscriber(subjects.SANDBOX_EXEC, queue=subjects.QUEUE_SANDBOX)
    async def handle(req: ExecRequest) -> ExecResult:
        return ExecResult(status="ok", stdout=req.code)

    client = make_broker("bench-client", settings, telemetry=telemetry)
    await service.start()
    await client.start()
    ours: list[float] = []
    payload = ExecRequest(code="print(1)")
    for i in range(n + warmup):
        t = time.perf_counter()
        await request(client, subjects.SANDBOX_EXEC, payload, ExecResult, timeout=5)
        if i >= warmup:
            ours.append((time.perf_counter() - t) * 1000)
    await client.stop()
    await service.stop()
    await responder.close()
    await requester.close()
    return {
        "p50_ms": round(pct(ours, 50), 3), "p99_ms": round(pct(ours, 99), 3),
        "raw_p50_ms": round(pct(raw, 50), 3), "raw_p99_ms": round(pct(raw, 99), 3),
        "added_p50_ms": round(pct(ours, 50) - pct(raw, 50), 3), "added_p99_ms": round(pct(ours, 99) - pct(raw, 99), 3),
        "n": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="300 requests")
    ap.add_argument("--no-telemetry", action="store_true", help="measure the wiring without trace propagation")
    args = ap.parse_args()
    n = 300 if args.quick else args.n
    import os
    import tempfile

    os.environ.setdefault("SYNDICATE_STATE_DIR", tempfile.mkdtemp(prefix="bench-bus-"))
    with nats_server() as url:
        result = asyncio.run(measure(url, n, warmup=min(200, n // 5), telemetry=not args.no_telemetry))
    result["goal_met"] = result["added_p50_ms"] <= 0.5 and result["added_p99_ms"] <= 3.0
    emit(result)


if __name__ == "__main__":
    main()
