"""One A2A task's trace, exported by every process over OTLP to a real OpenTelemetry
collector (rotel), arrives whole: one root (the caller's span), every other span's
parent among the trace's spans, across the gateway, router, agent and sandbox."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import WAIT_S
from tests.protocols.collector import Span
from tests.protocols.conftest import Stack, a2a_client
from tests.protocols.test_a2a import DONE, ask, collect

pytestmark = pytest.mark.integration

HOPS = {"a2a-caller", "gateway", "router", "coder-agent", "code-sandbox"}


def missing(spans: list[Span]) -> list[str]:
    """What keeps ``spans`` from being one whole trace (empty: nothing)."""
    ids = {s.span_id for s in spans}
    problems = [f"{s.service}/{s.name}: parent {s.parent_id} not received" for s in spans if s.parent_id and s.parent_id not in ids]
    roots = [s for s in spans if not s.parent_id]
    if [r.service for r in roots] != ["a2a-caller"]:
        problems.append(f"roots: {[(r.service, r.name) for r in roots]}")
    if absent := HOPS - {s.service for s in spans}:
        problems.append(f"no spans from {sorted(absent)}")
    return problems


async def test_an_a2a_tasks_spans_reach_the_collector_as_one_trace(stack: Stack) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "a2a-caller"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{stack.collector.endpoint}/v1/traces")))
    with provider.get_tracer("test").start_as_current_span("caller asks the coder") as root:
        headers: dict[str, str] = {}
        inject(headers)  # the caller's traceparent rides on its A2A request
        async with a2a_client(stack, "coder", streaming=False, headers=headers) as client:
            [event] = await collect(client.send_message(ask("Write square(x).")))
    provider.shutdown()
    assert event.task.status.state == DONE
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert event.task.metadata["trace_id"] == trace_id  # the task joined the caller's trace

    end = time.monotonic() + WAIT_S  # services export in batches (every few seconds)
    while True:
        spans = [s for s in stack.collector.spans() if s.trace_id == trace_id]
        if not missing(spans) or time.monotonic() > end:
            break
        await asyncio.sleep(0.5)
    assert missing(spans) == [], [(s.service, s.name, s.span_id, s.parent_id) for s in spans]
    names = {(s.service, s.name) for s in spans}
    assert ("gateway", "gateway task a2a") in names
    assert any(svc == "gateway" and "JsonRpcDispatcher" in name for svc, name in names), names  # the SDK's own span
