"""Helpers for benchmarks: a real nats-server on a free port, percentiles, the JSON last line."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.nats_server import nats_server_binary, wait_port  # noqa: E402


@contextmanager
def nats_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as store:
        proc = subprocess.Popen([nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0-100) of values, linear interpolation."""
    if not values:
        return float("nan")
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[max(0, min(98, int(q) - 1))] if len(values) > 1 else values[0]


def emit(result: dict) -> None:
    """The benchmark's last line: one JSON object."""
    print(json.dumps(result))
