"""`python -m shared.health SERVICE`, the probe compose, the images and k8s use: exit 0 only
when an instance of SERVICE answers the health broadcast as ready or degraded."""

from __future__ import annotations

import asyncio
import os
import sys

import nats
import pytest

from shared import subjects
from shared.contracts import HealthReply
from tests.conftest import free_port

from .conftest import REPO


async def run_probe(url: str, service: str, wait_s: float = 2.0) -> tuple[int, str]:
    """The probe's exit code and output (``wait_s``: it exits at the first healthy reply, so
    a probe that should pass gets a long window a busy machine cannot overrun)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.health", service, "--wait", str(wait_s),
        env={**os.environ, "SYNDICATE_NATS_URL": url}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def responder(url: str, replies: list[HealthReply]) -> nats.NATS:
    """Stand-ins for running services: each reply answers every ping."""
    nc = await nats.connect(url)
    for reply in replies:
        async def answer(msg: nats.aio.msg.Msg, reply: HealthReply = reply) -> None:
            await msg.respond(reply.model_dump_json().encode())

        await nc.subscribe(subjects.HEALTH_PING, cb=answer)
    await nc.flush()
    return nc


def reply(service: str, state: str = "ready") -> HealthReply:
    return HealthReply(service=service, instance=f"{service}@test", pid=1, state=state)


@pytest.mark.integration
async def test_ready_or_degraded_service_is_healthy(nats_server) -> None:
    nc = await responder(nats_server.url, [reply("router"), reply("retriever", "degraded")])
    try:
        code, out = await run_probe(nats_server.url, "router", wait_s=30)
        assert code == 0 and "ok: router" in out
        code, _ = await run_probe(nats_server.url, "retriever", wait_s=30)
        assert code == 0
    finally:
        await nc.close()


@pytest.mark.integration
async def test_starting_or_absent_service_is_unhealthy(nats_server) -> None:
    nc = await responder(nats_server.url, [reply("coder-agent", "starting"), reply("router")])
    try:
        code, out = await run_probe(nats_server.url, "coder-agent")
        assert code == 1 and "no ready reply" in out
        code, _ = await run_probe(nats_server.url, "code-sandbox")
        assert code == 1
    finally:
        await nc.close()


async def test_unreachable_bus_is_unhealthy() -> None:
    code, out = await run_probe(f"nats://127.0.0.1:{free_port()}", "router")
    assert code == 1 and "unhealthy" in out
