"""What every route of the gateway reaches through the app: its settings, broker, task
bridge, model-request client, metrics and health runtime (``Gateway``), the API-key check, body parsing and
the trace a request's task joins."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from faststream.nats import NatsBroker
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from pydantic import BaseModel, ValidationError

from services.gateway import http_errors as he
from services.gateway.metrics import ClusterCollector, GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.tasks import TaskBridge
from shared.generation.client import GenerateClient
from shared.service import ServiceRuntime

B = TypeVar("B", bound=BaseModel)


@dataclass
class Gateway:
    """One gateway's parts, built once by ``create_gateway`` (no global state)."""

    settings: GatewaySettings
    broker: NatsBroker
    bridge: TaskBridge
    metrics: GatewayMetrics
    runtime: ServiceRuntime
    models: GenerateClient  # model requests: the served models and plain generations on them
    cluster: ClusterCollector = field(default_factory=ClusterCollector)
    started: int = 0  # epoch seconds: the models' "created"

    @property
    def retry_after_s(self) -> int:
        return self.settings.gateway_retry_after_s


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def authorize(request: Request, gw: GatewayDep) -> None:
    """Refuse a request without the configured API key (none configured: all pass)."""
    if not key_accepted(gw.settings, request.headers.get("authorization", "")):
        raise he.unauthorized()


def key_accepted(settings: GatewaySettings, authorization: str) -> bool:
    """Whether an ``Authorization`` header carries the API key (always, when none is set);
    the protocol routes (MCP, A2A) check their raw ASGI requests with it too."""
    key = settings.gateway_api_key
    if not key:
        return True
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def parse_body(request: Request, model: type[B]) -> B:
    """The request body as ``model``: 400 with the reason when it is not JSON or not valid.
    (Parsed by hand rather than by FastAPI so the errors keep the OpenAI shape.)"""
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise he.invalid_request(f"request body is not JSON: {exc}") from exc
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise he.invalid_request(exc) from exc


def trace_parent(req: Request) -> otel_context.Context:
    """The trace a task joins: FastAPI's own server span when its telemetry is on (it
    has already joined an incoming ``traceparent``), else the W3C context in the headers."""
    if trace.get_current_span().is_recording():
        return otel_context.get_current()
    return extract(dict(req.headers))
