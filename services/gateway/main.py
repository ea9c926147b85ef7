"""gateway: OpenAI-compatible HTTP in front of the bus, and the syndicate's /metrics.

The FastAPI app owns one FastStream broker, started in the lifespan (in the background,
so HTTP answers 503 instead of hanging while NATS is down). The gateway also answers
HEALTH_PING like every service; its HealthReply carries its URL for ``syndicate status``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import struct
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics
from pydantic import BaseModel, ValidationError

from services.gateway import completions as cm
from services.gateway import http_errors as he
from services.gateway.metrics import ClusterCollector, GatewayMetrics, render
from services.gateway.openai_schema import (
    MODEL_DESCRIPTIONS,
    MODELS,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from services.gateway.settings import GatewaySettings
from services.gateway.tasks import TaskBridge, TaskRun
from shared import subjects
from shared.bus import add_health_responder, ensure_jetstream, make_broker, request
from shared.contracts import EmbedReply, EmbedRequest
from shared.errors import BusError, SyndicateError
from shared.logging import setup_logging
from shared.service import ServiceRuntime
from shared.telemetry import shutdown_tracing

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_gateway(settings: GatewaySettings | None = None) -> RequestCounter:
    """The gateway app, with its broker, metrics and task bridge (no global state)."""
    settings = settings or GatewaySettings()
    log = setup_logging("gateway", settings.log_level, settings.log_json)
    disable_created_metrics()  # *_created series only clutter the page
    broker = make_broker("gateway", settings)
    metrics = GatewayMetrics()
    cluster = ClusterCollector()
    bridge = TaskBridge(broker, settings, metrics)
    runtime = ServiceRuntime(
        "gateway", settings, details={"url": settings.gateway_url, "max_inflight": settings.gateway_max_inflight},
    )
    runtime.stats = lambda: {"queue_depth": 0, "running": bridge.inflight}
    add_health_responder(broker, runtime.health)
    started = int(time.time())
    retry_after = settings.gateway_retry_after_s

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
            connector.cancel()
            with contextlib.suppress(BaseException):
                await connector
            await bridge.drain()
            with contextlib.suppress(Exception):
                await broker.stop()
            shutdown_tracing()

    app = FastAPI(title="Agent Syndicate gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.bridge, app.state.metrics = settings, bridge, metrics

    @app.exception_handler(he.APIError)
    async def _api_error(_: Request, exc: he.APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    def authorize(req: Request) -> None:
        if not settings.gateway_api_key:
            return
        header = req.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.gateway_api_key.encode()):
            raise he.unauthorized()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    async def parse(req: Request, model: type[BaseModel]) -> Any:
        try:
            body = await req.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise he.invalid_request(f"request body is not JSON: {exc}") from exc
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise he.invalid_request(exc) from exc

    @v1.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(m, started) for m in MODELS]}

    @v1.get("/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in MODELS:
            raise he.unknown_model(model_id, list(MODELS))
        return model_card(model_id, started)

    @v1.post("/chat/completions")
    async def chat_completions(req: Request) -> Response:
        body = await parse(req, ChatCompletionRequest)
        return await generate(req, body, "chat")

    @v1.post("/completions")
    async def text_completions(req: Request) -> Response:
        body = await parse(req, CompletionRequest)
        return await generate(req, body, "completion")

    async def generate(req: Request, body: ChatCompletionRequest | CompletionRequest, endpoint: cm.Endpoint) -> Response:
        if body.model not in MODELS:
            raise he.unknown_model(body.model, list(MODELS))
        try:
            task = cm.to_task(body, timeout_s=settings.gateway_request_timeout_s)
        except ValidationError as exc:
            raise he.invalid_request(exc) from exc
        try:
            run = await bridge.start(task, body.model, trace_parent(req), endpoint)
        except SyndicateError as exc:
            raise he.from_exception(exc, retry_after) from exc
        watcher = asyncio.create_task(watch_disconnect(req, run))
        headers = {"x-syndicate-task-id": task.task_id}
        try:
            # Hold the status line until the first token or the result: a task refused
            # by a full engine queue or its deadline still gets its 429/504.
            first = await run.next()
            if first.kind == "token" and body.stream:
                return TaskStream(
                    stream(run, body, endpoint, first.text), run, watcher, media_type="text/event-stream",
                    headers={**SSE_HEADERS, **headers},
                )
            streamed = [first.text] if first.kind == "token" else []
            step = first
            while step.kind == "token":
                step = await run.next()
                streamed.append(step.text)
        except BaseException:
            watcher.cancel()
            await run.close()
            raise
        watcher.cancel()
        await run.close()
        if step.kind == "gone":
            return Response(status_code=499)  # nobody reads it; the task was cancelled
        assert step.result is not None
        if (err := he.from_result(step.result, retry_after)) is not None:
            err.headers.update(headers)
            raise err
        if body.stream:  # the answer came without live tokens: stream it in one piece
            return StreamingResponse(
                replay(body, endpoint, step.result), media_type="text/event-stream", headers={**SSE_HEADERS, **headers},
            )
        return JSONResponse(cm.final_body(endpoint, body.model, step.result), headers=headers)

    async def stream(
        run: TaskRun, body: ChatCompletionRequest | CompletionRequest, endpoint: cm.Endpoint, first: str,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        tid = run.task.task_id
        streamed: list[str] = []
        if endpoint == "chat":
            yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text="", role=True))
        text = first
        while True:
            streamed.append(text)
            yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=text))
            step = await run.next()
            if step.kind == "gone":
                return
            if step.kind == "result":
                break
            text = step.text
        result = step.result
        assert result is not None
        if (err := he.from_result(result, retry_after)) is not None:
            yield cm.sse(err.body())  # the OpenAI SDKs raise APIError on it
            yield cm.sse("[DONE]")
            return
        if rest := cm.remainder("".join(streamed), result.answer):
            yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=rest))
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=None if endpoint == "chat" else "", finish="stop"))
        if body.include_usage:
            yield cm.sse(cm.usage_chunk(endpoint, body.model, result, created))
        yield cm.sse("[DONE]")

    async def replay(body: ChatCompletionRequest | CompletionRequest, endpoint: cm.Endpoint, result: Any) -> AsyncIterator[bytes]:
        created = int(time.time())
        tid = result.task_id
        if endpoint == "chat":
            yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text="", role=True))
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=result.answer))
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=None if endpoint == "chat" else "", finish="stop"))
        if body.include_usage:
            yield cm.sse(cm.usage_chunk(endpoint, body.model, result, created))
        yield cm.sse("[DONE]")

    @v1.post("/embeddings")
    async def embeddings(req: Request) -> dict[str, Any]:
        body: EmbeddingRequest = await parse(req, EmbeddingRequest)
        if bridge.nc is None:
            raise he.bus_unavailable()
        t0 = time.perf_counter()
        try:
            reply = await request(
                broker, subjects.RETRIEVER_EMBED, EmbedRequest(texts=body.texts()), EmbedReply,
                timeout=settings.gateway_embed_timeout_s,
            )
        except BusError as exc:
            metrics.embed_seconds.labels("error").observe(time.perf_counter() - t0)
            if "no responders" in exc.message.lower():
                raise he.APIError(
                    503, f"no retriever is running: nothing answers {subjects.RETRIEVER_EMBED}",
                    type="service_unavailable_error", code="retriever_unavailable",
                ) from exc
            raise he.from_exception(exc, retry_after) from exc
        except (SyndicateError, ValidationError) as exc:
            metrics.embed_seconds.labels("error").observe(time.perf_counter() - t0)
            raise he.from_exception(exc, retry_after) from exc
        metrics.embed_seconds.labels("ok").observe(time.perf_counter() - t0)
        if body.dimensions is not None and body.dimensions != reply.dim:
            raise he.APIError(400, f"the embedder {reply.model} has {reply.dim} dimensions, not {body.dimensions}",
                              type="invalid_request_error", code="invalid_dimensions", param="dimensions")
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
            for i, v in enumerate(reply.vectors)
        ]
        # The retriever does not report token counts: usage stays 0 rather than a guess.
        return {"object": "list", "data": data, "model": reply.model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    app.include_router(v1)

    @app.get("/metrics")
    async def prometheus() -> Response:
        await cluster.refresh(bridge.nc, wait_s=settings.gateway_scrape_wait_s, cache_s=settings.gateway_scrape_cache_s)
        return Response(render(metrics, cluster), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> JSONResponse:
        up = bridge.nc is not None
        body = {"status": "ok" if up else "degraded", "bus": up, "inflight": bridge.inflight, "state": runtime.state}
        return JSONResponse(body, status_code=200 if up else 503)

    return RequestCounter(app, metrics)


def trace_parent(req: Request) -> otel_context.Context:
    """The trace a task joins: FastAPI's own server span when its telemetry is on (it
    has already joined an incoming ``traceparent``), else the W3C context in the headers."""
    if trace.get_current_span().is_recording():
        return otel_context.get_current()
    return extract(dict(req.headers))


class TaskStream(StreamingResponse):
    """An SSE response that always releases its task: also when the client leaves
    before the stream starts (its generator's ``finally`` would then never run)."""

    def __init__(self, content: AsyncIterator[bytes], run: TaskRun, watcher: asyncio.Task[None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.run, self.watcher = run, watcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.watcher.cancel()
            await self.run.close()


async def watch_disconnect(req: Request, run: TaskRun) -> None:
    """Tell the run when the client closes the connection (streaming or not)."""
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            run.client_gone()
            return


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "syndicate",
        "description": MODEL_DESCRIPTIONS[model_id], "task_kind": MODELS[model_id],
    }


def encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (the OpenAI SDK's default)."""
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


KNOWN_PATHS = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/metrics", "/health",
}


class RequestCounter:
    """Pure ASGI middleware counting requests by path and status (BaseHTTPMiddleware
    would break streaming disconnect detection)."""

    def __init__(self, app: FastAPI, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in KNOWN_PATHS else ("/v1/models/{id}" if path.startswith("/v1/models/") else "other")
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
