"""The embedded local stack: one supervisor process that starts nats-server (JetStream,
loopback, data in the state folder) and every service as a child process, pins agents
per the placement plan, restarts children (and NATS nodes) that die, and stops them all
on SIGTERM.

- Services: the registry's (``shared.registry``), the same list compose and k8s are
  generated from. NATS runs with one user per service plus ``cli`` and their subject
  permissions from the registry.
  Passwords are generated at every start into ``<state_dir>/credentials.json`` (mode
  0600, never committed); each service gets its own as SYNDICATE_NATS_USER/PASSWORD.
- ``nats_cluster=3``: three nats-server nodes on loopback with cluster routes; streams
  and the task bucket get 3 replicas and every service gets all three URLs, so a node
  may die (and is restarted on its store) while tasks flow.

``python -m syndicate.supervisor`` runs the supervisor; ``syndicate up/down/status`` drive it.
State: ``<state_dir>/stack.json`` (pids, ports, placement), logs in ``<state_dir>/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.registry import SERVICES, Service
from shared.settings import Settings, format_cpus
from syndicate.nats_server import (
    NatsNode,
    die_with_parent,
    free_port,
    nats_config,
    nats_env,
    nats_server_binary,
    wait_port,
)
from syndicate.stack_record import (
    credentials_file,
    pid_alive,
    read_stack,
    stack_file,
    write_credentials,
)


@dataclass
class Child:
    spec: Service
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # every restart since the stack started (what `syndicate status` shows)
    crash_streak: int = 0  # restarts in a row that did not stay up a minute: the backoff
    started_at: float = 0.0
    next_start: float = 0.0
    cpus: list[int] = field(default_factory=list)


def service_env(base: dict[str, str], settings: Settings, nats_url: str, name: str, cpus: list[int] | None) -> dict[str, str]:
    env = dict(base)
    env.update({
        "SYNDICATE_NATS_URL": nats_url,
        "SYNDICATE_STATE_DIR": str(settings.state_dir),
        "SYNDICATE_INSTANCE": f"{name}@{socket.gethostname()}",
        # Services float over shared cores: spinning OpenMP threads collapse throughput
        # (notes). An agent's own wait policy comes from its placement (see start()).
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONUNBUFFERED": "1",
    })
    if cpus:
        env["SYNDICATE_CPUS"] = format_cpus(cpus)
    return env


class Supervisor:
    """Runs nats-server (one node, or a cluster of ``nats_cluster`` nodes) and the
    services; restarts any that die (services with backoff 1 s → 30 s)."""

    def __init__(self, settings: Settings, services: tuple[Service, ...] = SERVICES, port: int | None = None,
                 *, nats_cluster: int = 1, auth: bool = True) -> None:
        self.settings = settings
        self.services = services
        self.port = port
        self.nats_cluster = max(1, nats_cluster)
        self.auth = auth
        self.children: list[Child] = []
        self.nodes: list[NatsNode] = []
        self.creds: dict[str, str] = {}
        self.placement: dict[str, Any] = {}
        self._stop = False

    @property
    def logs(self) -> Path:
        return self.settings.logs_dir

    @property
    def nats(self) -> subprocess.Popen[bytes] | None:
        """The first node's process (the only one without a cluster)."""
        return self.nodes[0].proc if self.nodes else None

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated (what SYNDICATE_NATS_URL accepts)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.creds = write_credentials(self.settings) if self.auth else {}
        if not self.auth:
            credentials_file(self.settings).unlink(missing_ok=True)
        self._make_nodes()
        for node in self.nodes:
            self._start_node(node, wait=False)
        for node in self.nodes:
            assert node.proc is not None
            wait_port(node.port, node.proc)
        # A second stack on the machine (another clone, CI) must not crash-loop its gateway.
        gateway_port = os.environ.get("SYNDICATE_GATEWAY_PORT") or str(free_port(8080))
        plan = self.plan()
        for spec in self.services:
            agent = plan.get(spec.role or "", {})
            env = service_env(dict(os.environ), self.settings, self.nats_url, spec.name, agent.get("cpus"))
            env.update(agent.get("env", {}))  # SYNDICATE_CPUS, OMP_NUM_THREADS, OMP_WAIT_POLICY
            if agent and "OMP_WAIT_POLICY" not in agent.get("env", {}):
                env.pop("OMP_WAIT_POLICY", None)  # cores of its own: OpenMP's default is fastest
            if self.auth:
                env.update(SYNDICATE_NATS_USER=spec.name, SYNDICATE_NATS_PASSWORD=self.creds[spec.name])
            else:
                env.pop("SYNDICATE_NATS_USER", None)
                env.pop("SYNDICATE_NATS_PASSWORD", None)
            if self.nats_cluster >= 3:
                env["SYNDICATE_STREAM_REPLICAS"] = "3"
            env["SYNDICATE_GATEWAY_PORT"] = gateway_port
            self.children.append(Child(spec=spec, env=env, cpus=agent.get("cpus", [])))
        for child in self.children:
            self._spawn(child)
        self.write_record("running")

    def _make_nodes(self) -> None:
        self.port = self.port or free_port(4222)
        if self.nats_cluster == 1:
            self.nodes = [NatsNode("syndicate-nats", self.port, None, self.settings.state_dir / "nats")]
            return
        taken = {self.port}
        ports = [self.port]
        for _ in range(self.nats_cluster - 1):
            ports.append(free_port(ports[-1] + 1, taken))
            taken.add(ports[-1])
        for i, port in enumerate(ports):
            cluster_port = free_port(port + 2000, taken)
            taken.add(cluster_port)
            self.nodes.append(NatsNode(f"syndicate-n{i + 1}", port, cluster_port, self.settings.state_dir / "nats" / f"n{i + 1}"))

    def _start_node(self, node: NatsNode, *, wait: bool = True) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        conf = self.settings.state_dir / "nats" / f"{node.name}.conf"
        conf.write_text(nats_config(node, self.nodes, self.auth))
        log = (self.logs / f"{node.name}.log").open("ab")
        node.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], env=nats_env(self.creds), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        if wait:
            wait_port(node.port, node.proc)

    def plan(self) -> dict[str, Any]:
        """Cores per agent role from the placement planner (never oversubscribed)."""
        from syndicate.placement import stack_plan

        self.placement = stack_plan([s.role for s in self.services if s.role and s.weight])
        return self.placement.get("agents", {})

    def _spawn(self, child: Child) -> None:
        log = (self.logs / f"{child.spec.name}.log").open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, "-m", child.spec.module], env=child.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(Path(__file__).resolve().parent.parent), preexec_fn=die_with_parent,
        )
        child.started_at = time.monotonic()

    def step(self) -> None:
        """One supervision round: restart what died, with backoff."""
        now = time.monotonic()
        changed = False
        for node in self.nodes:  # a node restarts on its own store; clients reconnect
            if node.proc is not None and node.proc.poll() is not None:
                node.restarts += 1
                self._start_node(node)
                changed = True
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                stable = now - child.started_at > 60
                child.crash_streak = 0 if stable else child.crash_streak + 1
                child.restarts += 1
                child.next_start = now + min(30.0, 2.0 ** max(0, child.crash_streak - 1))
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
        nodes = [n.proc for n in self.nodes if n.proc is not None]
        for p in nodes:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        _wait_all(nodes, 10.0)
        stack_file(self.settings).unlink(missing_ok=True)
        credentials_file(self.settings).unlink(missing_ok=True)

    def write_record(self, state: str) -> None:
        record = {
            "supervisor_pid": os.getpid(), "state": state, "nats_url": self.nats_url,
            "nats_pid": self.nats.pid if self.nats else None, "state_dir": str(self.settings.state_dir),
            "auth": self.auth, "credentials": str(credentials_file(self.settings)) if self.auth else None,
            "nats_nodes": [{"name": n.name, "url": n.url, "cluster_port": n.cluster_port,
                            "pid": n.proc.pid if n.proc else None, "restarts": n.restarts} for n in self.nodes],
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


def spawn_detached(settings: Settings, port: int | None = None, *, nats_cluster: int = 1, auth: bool = True,
                   only: list[str] | None = None) -> int:
    """Start the supervisor in its own session; returns its pid."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "syndicate.supervisor", "--nats-cluster", str(nats_cluster)]
    if port:
        cmd += ["--port", str(port)]
    if not auth:
        cmd.append("--no-auth")
    if only:
        cmd += ["--only", ",".join(only)]
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
    while time.monotonic() < end and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Agent Syndicate local stack supervisor")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--nats-cluster", type=int, default=1, help="NATS nodes (3: a loopback cluster, R3 streams)")
    parser.add_argument("--no-auth", action="store_true", help="NATS without users and permissions")
    parser.add_argument("--only", default="", help="comma-separated services to run (default: all)")
    args = parser.parse_args()
    settings = Settings()
    if read_stack(settings) is not None:
        print("a stack is already running for", settings.state_dir, file=sys.stderr)
        sys.exit(1)
    services = select_services(args.only.split(",") if args.only else None)
    Supervisor(settings, services, port=args.port, nats_cluster=args.nats_cluster, auth=not args.no_auth).run_forever()


def select_services(names: list[str] | None) -> tuple[Service, ...]:
    """The registry's services named (all when None); ValueError for an unknown name."""
    if not names:
        return SERVICES
    known = {s.name: s for s in SERVICES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {sorted(known)}")
    return tuple(known[n] for n in names)


if __name__ == "__main__":
    main()


__all__ = ["Supervisor", "select_services", "spawn_detached", "stop_stack"]
