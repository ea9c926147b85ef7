"""The containerised stack for `make compose-test`: compose.yaml + compose.local.yaml (the
local stand-ins) + this host's placement plan, run by podman-compose with the images of
`make images`, under its own project name and free host ports, so it never meets a
user's stack or a local `syndicate up`.

Nothing here runs in `make test` (the `compose` marker is deselected there): the stack
needs podman, the built images and minutes of model loading.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.llm.roster import load_roster
from shared.registry import nats_users
from shared.topology import default_roles, discover, plan_placement
from syndicate import deploy

REPO = Path(__file__).resolve().parents[2]
PROJECT = "syndicate-ct"
IMAGES = ("syndicate/agent", "syndicate/sandbox", "syndicate/gateway", "syndicate/nats", "syndicate/otel-collector")
BASE_IMAGE = "localhost/syndicate/debian-python:bookworm"
LONG_RUNNING = ("nats", "jaeger", "router", "coder-agent", "reasoner-agent", "retriever", "code-sandbox",
                "evaluator", "gateway")
NO_HEALTHCHECK = ("jaeger",)  # the collector, like Jaeger's image, has nothing to probe with
READY_S = float(os.environ.get("SYNDICATE_COMPOSE_READY_S", "900"))  # model loads on a busy 2-core host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} ... exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@dataclass
class Stack:
    """One running compose project and how to reach it from the host."""

    work: Path
    env: dict[str, str]
    plan: dict
    ports: dict[str, int]
    passwords: dict[str, str]
    files: list[Path] = field(default_factory=list)
    ready: dict[str, float] = field(default_factory=dict)  # service -> seconds to healthy

    @property
    def nats_url(self) -> str:
        return f"nats://cli:{self.passwords['cli']}@127.0.0.1:{self.ports['nats']}"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp']}"

    def compose(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [str(REPO / ".venv" / "bin" / "podman-compose"), "-p", PROJECT]
        for f in self.files:
            argv += ["-f", str(f)]
        return run(argv + list(args), env=self.env, check=check, timeout=timeout)

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], env=self.env, check=check, timeout=timeout)

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def healthy(self, service: str) -> bool:
        """Runs the container's own healthcheck (podman 4.3 without systemd runs none by itself)."""
        return self.podman("healthcheck", "run", self.container(service), check=False, timeout=60).returncode == 0

    def inspect(self, service: str, fmt: str) -> str:
        """``podman inspect --format fmt`` of the service's container ("" when it has none)."""
        return self.podman("inspect", "--format", fmt, self.container(service), check=False).stdout.strip()

    def host_cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """The `syndicate` command on the host, as NATS user cli, exporting spans to the collector."""
        env = {**self.env, "SYNDICATE_NATS_URL": self.nats_url, "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "SYNDICATE_STATE_DIR": str(self.work / "cli-state")}
        return run([str(REPO / ".venv" / "bin" / "syndicate"), *args], env=env, check=False, timeout=timeout)


def _missing_prerequisites(env: dict[str, str]) -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (make compose-test installs it)"
    if not (REPO / ".venv" / "bin" / "podman-compose").exists():
        return "podman-compose is not installed in .venv (make install)"
    for image in IMAGES:
        if run(["podman", "image", "exists", f"{image}:latest"], env=env, check=False).returncode != 0:
            return f"image {image}:latest is not built (make images)"
    return None


def _overrides(work: Path, plan: dict, ports: dict[str, int]) -> list[Path]:
    """This host's cpusets (the placement planner's plan) and free host ports."""
    cpus = work / "compose.cpus.yaml"
    cpus.write_text(deploy.render_compose_cpus(plan))
    published = work / "compose.ports.yaml"
    published.write_text(
        "# Free host ports, so the test stack never meets another stack's.\nservices:\n"
        f"  nats:\n    ports: !override\n      - \"127.0.0.1:{ports['nats']}:4222\"\n"
        f"  jaeger:\n    ports: !override\n      - \"127.0.0.1:{ports['otlp']}:4318\"\n"
        f"  gateway:\n    ports: !override\n      - \"127.0.0.1:{ports['gateway']}:8080\"\n"
    )
    return [REPO / "compose.yaml", REPO / "compose.local.yaml", cpus, published]


def _fill_models_volume(stack: Stack) -> None:
    """The roster's default models, copied from the host's verified cache (`make models`)
    into the project's models volume with their mtimes, so the agents' sha256 stamps hold."""
    roster = load_roster(REPO / "infra" / "models.toml")
    resolved = [roster.role(name, env={}) for name in roster.roles]
    files = sorted({r.path for r in resolved} | {r.draft.path for r in resolved if r.draft})
    mounts: list[str] = []
    for path in files:
        if not path.is_file():
            pytest.fail(f"model {path} missing on the host: run `make models`")
        for f in (path, path.with_name(path.name + ".verified")):
            if f.is_file():
                mounts += ["-v", f"{f}:/src/{f.name}:ro"]
    volume = f"{PROJECT}_models"
    stack.podman("volume", "create", "--label", f"io.podman.compose.project={PROJECT}", volume, check=False)
    stack.podman("run", "--rm", "--network", "none", "-v", f"{volume}:/models", *mounts, BASE_IMAGE,
                 "sh", "-c", "cp -a /src/. /models/ && ls -l /models", timeout=600)


def wait_healthy(stack: Stack, services: tuple[str, ...], timeout_s: float) -> dict[str, float]:
    """Service -> seconds until its healthcheck first passed (AssertionError on timeout)."""
    start, ready = time.monotonic(), {}
    while len(ready) < len(services):
        for service in services:
            up = stack.inspect(service, "{{.State.Status}}") == "running" if service in NO_HEALTHCHECK else stack.healthy(service)
            if service not in ready and up:
                ready[service] = time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            late = [s for s in services if s not in ready]
            logs = {s: stack.podman("logs", "--tail", "20", stack.container(s), check=False).stderr[-1500:] for s in late}
            raise AssertionError(f"not healthy after {timeout_s:.0f}s: {late}\n{logs}")
        time.sleep(3)
    return ready


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(REPO / "infra" / "containers" / "containers.conf"))}
    if (why := _missing_prerequisites(env)) is not None:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("compose")
    passwords = {user: deploy.new_password() for user, _ in nats_users()}
    env.update({deploy.password_env(user): pw for user, pw in passwords.items()})
    topology = discover()
    plan = plan_placement(topology, default_roles()).summary(topology)
    ports = {"nats": free_port(), "otlp": free_port(), "gateway": free_port()}
    stack = Stack(work, env, plan, ports, passwords)
    stack.files = _overrides(work, plan, ports)
    stack.compose("down", "-v", check=False)  # a previous run's leftovers
    _fill_models_volume(stack)
    t0 = time.monotonic()
    stack.compose("up", "-d", "--no-build")
    try:
        stack.ready = wait_healthy(stack, LONG_RUNNING, READY_S)
        print(f"stack up and healthy in {time.monotonic() - t0:.0f}s: {stack.ready}")
        yield stack
    finally:
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        for service in LONG_RUNNING:
            out = stack.podman("logs", stack.container(service), check=False)
            (logs / f"{service}.log").write_text(out.stdout + out.stderr)
        stack.compose("down", "-v", check=False)
        left = stack.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "-q", check=False).stdout
        assert not left.strip(), f"containers left behind: {left}"


SPAN = re.compile(r"^\s*(Trace ID|Parent ID|ID|Name)\s*: ?(.*)$")
SERVICE = re.compile(r"->\s*service\.name: Str\((.*)\)")


def collector_spans(log: str) -> list[dict[str, str]]:
    """Spans the collector printed (rotel's detailed debug log): trace, parent, id, name,
    service."""
    spans: list[dict[str, str]] = []
    service = ""
    for line in log.splitlines():
        if m := SERVICE.search(line):
            service = m.group(1)
        elif line.startswith("Span #"):
            spans.append({"service": service})
        elif spans and (m := SPAN.match(line)):
            key = {"Trace ID": "trace", "Parent ID": "parent", "ID": "id", "Name": "name"}[m.group(1)]
            spans[-1].setdefault(key, m.group(2).strip())
    return spans
