"""One log format per process: structlog JSON on stderr, every line with the service name
and the trace_id/span_id of the current span — our own lines and the stdlib loggers'
(faststream, nats-py, ``syndicate.bus``, uvicorn) alike, since both go through one
handler whose formatter is structlog's ``ProcessorFormatter``."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

# Libraries speak at WARNING and above so they do not drown the services' own lines.
QUIET_LIBRARIES = ("faststream", "nats", "asyncio", "uvicorn", "httpx", "httpcore", "urllib3", "qdrant_client")


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def _add_service(service: str) -> Any:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return add


def setup_logging(service: str, level: str = "INFO", json: bool = True) -> structlog.stdlib.BoundLogger:
    """Configure structlog and route stdlib logging through it, for a process; returns
    its logger."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        _add_trace_ids,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,  # stdlib records get the same fields as ours
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    return structlog.get_logger("syndicate").bind(service=service)
