"""How the CLI reaches the bus: the running stack's NATS, a broker with telemetry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import nats
from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import make_broker, scatter
from shared.contracts import HealthPing, HealthReply
from shared.errors import BusError
from shared.settings import Settings, nats_servers
from syndicate.stack_record import resolve_connection


def cli_settings() -> Settings:
    """Settings of a CLI process: the running stack's NATS and its `cli` user, unless
    SYNDICATE_NATS_URL / SYNDICATE_NATS_USER say otherwise."""
    return resolve_connection(Settings())


async def reachable(servers: str | list[str], timeout_s: float = 1.0) -> bool:
    """Whether any server of ``servers`` (a URL, a comma-separated list or a list) accepts a
    TCP connection. nats-py keeps retrying a refused first connect, so the CLI looks before it leaps."""
    for server in nats_servers(servers) if isinstance(servers, str) else servers:
        parsed = urlparse(server)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(parsed.hostname, parsed.port or 4222), timeout_s)
        except (OSError, TimeoutError):
            continue
        writer.close()
        return True
    return False


async def health_replies(servers: str | list[str], wait_s: float = 0.5) -> list[HealthReply]:
    """Every instance's answer to one health broadcast ([] when NATS is unreachable).

    ``servers``: a URL, a comma-separated cluster list, or ``Settings.nats_servers``."""
    urls = nats_servers(servers) if isinstance(servers, str) else servers
    if not await reachable(urls):
        return []
    try:
        nc = await asyncio.wait_for(
            nats.connect(urls, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False), 5.0)
    except Exception:
        return []
    try:
        raw = await scatter(nc, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), wait_s=wait_s)
    finally:
        await nc.close()
    out = []
    for data in raw:
        with contextlib.suppress(Exception):
            out.append(HealthReply.model_validate_json(data))
    return out


@contextlib.asynccontextmanager
async def connected_broker(settings: Settings | None = None) -> AsyncIterator[NatsBroker]:
    """A started broker named 'cli' whose spans join the task's trace."""
    settings = settings or cli_settings()
    if not await reachable(settings.nats_url):
        raise BusError(f"cannot reach NATS at {settings.nats_url}: is the stack running? (syndicate up --detach)")
    broker = make_broker("cli", settings)
    try:
        await asyncio.wait_for(broker.connect(), timeout=settings.connect_timeout_s)
    except Exception as exc:
        raise BusError(
            f"cannot reach NATS at {settings.nats_url}: is the stack running? (syndicate up --detach)"
        ) from exc
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
