"""gateway: OpenAI-compatible HTTP in front of the bus, and the syndicate's /metrics.

The FastAPI app owns one FastStream broker, started in the lifespan (in the background,
so HTTP answers 503 instead of hanging while NATS is down). The gateway also answers
HEALTH_PING like every service; its HealthReply carries its URL for ``syndicate status``.
The endpoints live in ``services/gateway/routes/`` (one router per family).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import disable_created_metrics
from starlette.routing import Match

from services.gateway import http_errors as he
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes import ROUTERS
from services.gateway.settings import GatewaySettings
from services.gateway.state import Gateway
from services.gateway.tasks import TaskBridge
from shared.bus import add_health_responder, ensure_jetstream, make_broker
from shared.generation.client import GenerateClient
from shared.logging import setup_logging
from shared.service import ServiceRuntime
from shared.telemetry import shutdown_tracing


async def stop_task(task: asyncio.Future[Any], *, cancel: bool = True, wait_s: float = 1.0, tries: int = 10) -> bool:
    """Cancel ``task`` (unless ``cancel`` is False) and wait for it, at most ``tries`` times
    ``wait_s``; True when it ended. A cancel is sent again each time: nats-py's connect loop
    (retrying for ever while NATS is down) can lose one that lands as an inner ``wait_for``
    finishes (Python 3.11), and a bare ``await`` then waits for ever (a loaded CI machine hung
    a gateway's shutdown for 300 s so). Whatever the task raised is dropped: it is stopping."""
    for _ in range(tries):
        if cancel:
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        if done:
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it as never retrieved
            return True
    return False


def create_gateway(settings: GatewaySettings | None = None) -> RequestCounter:
    """The gateway app, with its broker, metrics and task bridge (no global state)."""
    settings = settings or GatewaySettings()
    log = setup_logging("gateway", settings.log_level, settings.log_json)
    disable_created_metrics()  # *_created series only clutter the page
    broker = make_broker("gateway", settings)
    metrics = GatewayMetrics()
    bridge = TaskBridge(broker, settings, metrics)
    details: dict[str, object] = {"url": settings.gateway_url, "max_inflight": settings.gateway_max_inflight}
    if settings.gateway_console != "off":
        details["console"] = f"{settings.gateway_public_url or settings.gateway_url}".rstrip("/") + "/ui"
    runtime = ServiceRuntime("gateway", settings, details=details)
    runtime.stats = lambda: {"queue_depth": 0, "running": bridge.inflight}
    add_health_responder(broker, runtime.health)
    gw = Gateway(settings, broker, bridge, metrics, runtime, GenerateClient(broker), started=int(time.time()))

    async def connect() -> None:
        while True:
            try:
                await broker.start()
                await ensure_jetstream(broker)
            except Exception as exc:  # NATS not up yet: HTTP answers 503 meanwhile
                log.warning("bus not reachable, retrying", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            runtime.state = "ready"
            log.info("gateway ready", url=settings.gateway_url)
            return

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connector = asyncio.create_task(connect())
        try:
            yield
        finally:
            runtime.state = "stopping"
            if not await stop_task(connector):
                log.warning("the bus connector did not stop; shutting down without it")
            await bridge.drain()
            await stop_task(asyncio.ensure_future(broker.stop()), cancel=False, wait_s=10.0, tries=1)
            shutdown_tracing()

    app = FastAPI(title="Agent Syndicate gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw

    @app.exception_handler(he.APIError)
    async def _api_error(_: Request, exc: he.APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    for router in ROUTERS:
        app.include_router(router)
    return RequestCounter(app, metrics)


class RequestCounter:
    """Pure ASGI middleware counting requests by path and status (BaseHTTPMiddleware
    would break streaming disconnect detection)."""

    def __init__(self, app: FastAPI, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.state = app.state
        self.routes = [route for router in ROUTERS for route in router.routes]

    def endpoint(self, scope: dict[str, Any]) -> str:
        """The route's path template ("/v1/models/{model_id}"), so labels stay few; "other"
        for a path no router serves."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return getattr(route, "path", "other")
        return "other"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.endpoint(scope)
        counted = False

        async def send_counted(message: MutableMapping[str, Any]) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                # Counted when the answer starts, so a client that reads its response and
                # then scrapes already sees it.
                counted = True
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            if not counted:  # failed before answering
                self.metrics.requests.labels(endpoint, "500").inc()
