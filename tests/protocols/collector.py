"""A real OpenTelemetry collector for tests: ``rotel`` (PyPI) ships one as a binary. It
receives OTLP over gRPC and HTTP, drops the data (blackhole exporter) and prints every
span it received to its debug log, which ``spans()`` parses back."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import rotel

from syndicate.nats_server import wait_port
from tests.conftest import free_port

BINARY = Path(rotel.__file__).parent / "rotel-agent"
FIELD = re.compile(r"^\s*(Trace ID|Parent ID|ID|Name|Kind)\s*: ?(.*)$")
SERVICE = re.compile(r"->\s*service\.name:\s*Str\((.*)\)")


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    kind: str
    service: str


@dataclass
class Collector:
    root: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "rotel.log"

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(BINARY), "start", "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
             "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}", "--exporter", "blackhole",
             "--debug-log", "traces", "--debug-log-verbosity", "detailed",
             "--pid-file", str(self.root / "rotel.pid")],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )
        wait_port(self.http_port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def spans(self) -> list[Span]:
        """Every span the collector has logged so far."""
        out: list[Span] = []
        service = ""
        current: dict[str, str] = {}

        def flush() -> None:
            if {"Trace ID", "ID", "Name"} <= current.keys():
                out.append(Span(current["Trace ID"], current["ID"], current.get("Parent ID", ""),
                                current["Name"], current.get("Kind", ""), service))
            current.clear()

        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith(("ResourceSpans #", "Span #")):
                flush()
            elif (m := SERVICE.search(line)) is not None:
                service = m.group(1)
            elif (m := FIELD.match(line)) is not None:
                current[m.group(1)] = m.group(2).strip()
        flush()
        return out
