"""The gateway's MCP server over stdio, for desktop assistants that start their MCP
servers as commands (``syndicate mcp`` runs ``python -m services.gateway.mcp_stdio``).

stdout is the protocol's channel: logs go to stderr. The process reaches the bus like
the gateway does (same NATS user and permissions) and serves no HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib

from services.gateway.mcp_tools import build_mcp
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.state import Gateway
from services.gateway.tasks import TaskBridge
from shared.bus import make_broker
from shared.errors import BusError
from shared.generation.client import GenerateClient
from shared.logging import setup_logging
from shared.service import ServiceRuntime
from shared.telemetry import shutdown_tracing


async def serve() -> None:
    settings = GatewaySettings()
    log = setup_logging("gateway-mcp", settings.log_level, settings.log_json)
    broker = make_broker("gateway-mcp", settings)
    try:
        await asyncio.wait_for(broker.connect(), timeout=settings.connect_timeout_s)
    except Exception as exc:  # the assistant shows stderr: say what to fix
        raise BusError(f"cannot reach NATS at {settings.nats_url}: is the stack running? (syndicate up --detach)") from exc
    await broker.start()
    metrics = GatewayMetrics()
    bridge = TaskBridge(broker, settings, metrics)
    gw = Gateway(settings, broker, bridge, metrics, ServiceRuntime("gateway-mcp", settings, state="ready"),
                 GenerateClient(broker))
    log.info("mcp over stdio ready", ingest_roots=[str(r) for r in settings.gateway_ingest_roots])
    try:
        await build_mcp(gw).run_stdio_async()
    finally:
        await bridge.drain()
        with contextlib.suppress(Exception):
            await broker.stop()
        shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(serve())
