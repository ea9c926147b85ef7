"""Every line a process logs is one JSON object with the service and, inside a span, its
trace id: structlog's own lines and the stdlib loggers' (faststream, nats, syndicate.bus)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import logging
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from shared.logging import setup_logging

trace.set_tracer_provider(TracerProvider())
log = setup_logging("probe", "INFO", True)
with trace.get_tracer("t").start_as_current_span("s"):
    log.info("ours", n=1)
    logging.getLogger("syndicate.bus").info("bus says %s", "hi")
    logging.getLogger("nats.aio.client").warning("library warning")
    logging.getLogger("faststream").info("library chatter")  # below the libraries' level
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("syndicate.bus").exception("failed")
log.info("outside")
"""


def test_every_line_is_json_with_service_and_trace() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]  # raises on a non-JSON line
    assert [entry["event"] for entry in lines] == ["ours", "bus says hi", "library warning", "failed", "outside"]
    assert all(entry["service"] == "probe" and entry["level"] for entry in lines)
    inside = lines[:4]
    assert len({entry["trace_id"] for entry in inside}) == 1 and all(len(e["span_id"]) == 16 for e in inside)
    assert "trace_id" not in lines[4]
    assert "ZeroDivisionError" in lines[3]["exception"]
