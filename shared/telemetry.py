"""OpenTelemetry tracing for every process.

With an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, e.g. Jaeger) spans are batched
there. Without one (the embedded local stack) each process appends its spans as JSON
lines to ``<state_dir>/traces/<service>-<pid>.jsonl``; ``read_trace`` gathers a trace
back for ``syndicate trace``. W3C trace context crosses NATS in message headers
(FastStream's NatsTelemetryMiddleware, wired in shared.bus).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from shared.settings import Settings

_provider: TracerProvider | None = None


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans as JSON lines to one file per process (no locking needed)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(s), default=str) + "\n" for s in spans)
        with self._lock, self._path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "service": span.resource.attributes.get("service.name", "unknown"),
        "name": span.name,
        "kind": span.kind.name.lower(),
        "start": (span.start_time or 0) / 1e9,
        "end": (span.end_time or 0) / 1e9,
        "status": span.status.status_code.name.lower(),
        "attributes": dict(span.attributes or {}),
    }


def setup_tracing(service: str, settings: Settings | None = None) -> TracerProvider:
    """Install the process-wide tracer provider for ``service`` (idempotent)."""
    global _provider
    if _provider is not None:
        return _provider
    settings = settings or Settings()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        # Written from a background thread every 100 ms (file writes on the event loop cost
        # ~0.5 ms a hop); short enough that `syndicate trace` right after a task sees it all.
        path = settings.traces_dir / f"{service}-{os.getpid()}.jsonl"
        provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter(path), schedule_delay_millis=100))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.force_flush()
        _provider.shutdown()


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def read_trace(traces_dir: Path, trace_id: str) -> list[dict[str, Any]]:
    """All spans of ``trace_id`` in the local trace store, ordered by start time."""
    spans: list[dict[str, Any]] = []
    if not traces_dir.is_dir():
        return spans
    needle = f'"trace_id": "{trace_id}"'
    for path in traces_dir.glob("*.jsonl"):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if needle in line:
                    try:
                        spans.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash
    spans.sort(key=lambda s: s["start"])
    return spans
