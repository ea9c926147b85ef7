"""Harness of the reliability tests: the real local stack (``python -m syndicate.supervisor``,
the supervisor that restarts what dies) in a temporary state folder, a loopback NATS
cluster, and a bus client that submits tasks and watches their results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from shared import subjects
from shared.contracts import FINAL_STATUSES, TaskState, TaskSubmit
from shared.settings import Settings, url_credentials
from syndicate.cli.connect import health_replies
from syndicate.nats_server import NatsNode, nats_config, nats_server_binary, wait_port
from tests.conftest import REPO, WAIT_S, free_port, wait_until

CODE = "```python\ndef square(x):\n    return x * x\n```"
# ~30 streamed pieces: with SYNDICATE_ENGINE_SCRIPT_DELAY=0.02 a generation takes ~0.6 s.
REPLY_CODE = '```python\ndef square(x):\n    """The square of x, for every number x."""\n    return x * x\n```\n' + "# done\n" * 8

# Scripted models, no test-writing round, hashing embedder, degraded sandbox allowed
# (bubblewrap may be missing), no router classifier: every process starts in ~1-2 s.
FAST_ENV = {
    "SYNDICATE_WRITE_TESTS": "false",
    "SYNDICATE_ROUTER_CLASSIFIER": "0",
    "SYNDICATE_SANDBOX_ALLOW_DEGRADED": "1",
    "SYNDICATE_EMBEDDER": "hashing",
    "SYNDICATE_LOG_JSON": "false",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


class Stack:
    """``python -m syndicate.supervisor`` on a temporary state folder, as a user would run it."""

    def __init__(self, root: Path, services: list[str], env: dict[str, str] | None = None, *,
                 nats_cluster: int = 1, auth: bool = True) -> None:
        self.root = root
        self.state = root / "state"
        self.services = services
        self.nats_cluster = nats_cluster
        self.auth = auth
        self.extra_env = {**FAST_ENV, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.supervisor_pid: int | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATE_", "OTEL_", "NATS_"))}
        env.update(self.extra_env)
        env.update({"SYNDICATE_STATE_DIR": str(self.state), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def start(self, timeout_s: float = WAIT_S, *, via_cli: bool = False) -> None:
        """Run the supervisor in the foreground of a child process, or, ``via_cli``, as a
        user would: ``syndicate up --detach`` (which returns once every service is ready)."""
        self.state.mkdir(parents=True, exist_ok=True)
        flags = ["--only", ",".join(self.services), "--nats-cluster", str(self.nats_cluster)]
        if not self.auth:
            flags.append("--no-auth")
        if via_cli:
            up = self.cli("up", "--detach", "--wait", str(timeout_s), *flags, timeout=timeout_s + 30)
            assert up.returncode == 0, up.stdout + up.stderr
            self.supervisor_pid = self.record()["supervisor_pid"]
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", "syndicate.supervisor", *flags], env=self.env(), cwd=REPO,
                                         stdout=(self.root / "supervisor.log").open("ab"), stderr=subprocess.STDOUT)
        self.wait_ready(self.services, timeout_s)

    # --- what the supervisor reports ---------------------------------------------------
    def record(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "stack.json").read_text())
        except (OSError, ValueError):
            return {}

    def pid(self, service: str) -> int | None:
        return self.record().get("services", {}).get(service, {}).get("pid")

    def settings(self, user: str = "cli") -> Settings:
        """Connection settings of ``user`` (its stack password when the stack has auth)."""
        base = Settings(state_dir=self.state, nats_url=self.record().get("nats_url") or "nats://127.0.0.1:1")
        creds = json.loads((self.state / "credentials.json").read_text()) if self.auth else {}
        if user in creds:
            return base.model_copy(update={"nats_user": user, "nats_password": creds[user]})
        return base

    def ready(self) -> set[str]:
        if not self.record():
            return set()
        replies = asyncio.run(health_replies(self.settings().nats_servers, wait_s=0.4))
        return {r.service for r in replies if r.state in ("ready", "degraded")}

    def wait_ready(self, names: list[str], timeout_s: float = WAIT_S) -> None:
        ready: set[str] = set()

        def supervisor_alive() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervisor exited {self.proc.returncode}: {self.log('supervisor')[-2000:]}")

        def all_ready() -> bool:
            ready.clear()
            ready.update(self.ready())
            return set(names) <= ready

        wait_until(all_ready, lambda: f"not ready: {set(names) - ready}\n" + "\n".join(
            self.log(n)[-1500:] for n in set(names) - ready), timeout_s, every_s=0.3, alive=supervisor_alive)

    def log(self, name: str) -> str:
        path = self.root / "supervisor.log" if name == "supervisor" else self.state / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- faults ------------------------------------------------------------------------
    def kill(self, service: str, timeout_s: float = WAIT_S) -> int:
        """kill -9 ``service``; returns once the supervisor restarted it and it is ready."""
        old = self.pid(service)
        assert old and alive(old), f"{service} is not running"
        os.kill(old, signal.SIGKILL)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            new = self.pid(service)
            if new and new != old and alive(new) and service in self.ready():
                return new
            time.sleep(0.2)
        raise TimeoutError(f"{service} was not restarted:\n{self.log(service)[-2000:]}")

    def kill_nats(self, index: int = 0) -> None:
        """kill -9 one NATS node (the supervisor restarts it on the same store)."""
        node = self.record()["nats_nodes"][index]
        os.kill(node["pid"], signal.SIGKILL)

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "syndicate.cli", *args], env=self.env(), cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.supervisor_pid is not None and alive(self.supervisor_pid):
            self.cli("down")
        if self.proc is None:
            self._reap()
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap()

    def _reap(self) -> None:
        """Anything the supervisor left behind (it should leave nothing)."""
        for entry in [*self.record().get("services", {}).values(), *self.record().get("nats_nodes", [])]:
            if alive(entry.get("pid")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(entry["pid"], signal.SIGKILL)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(services: list[str], env: dict[str, str] | None = None, *, via_cli: bool = False, **kw: Any) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", services, env, **kw)
        stacks.append(stack)
        stack.start(via_cli=via_cli)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


class NatsCluster:
    """Three nats-server processes with cluster routes on loopback (no supervisor)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [
            NatsNode(f"n{i + 1}", free_port(), free_port(), root / f"n{i + 1}") for i in range(size)
        ]
        self.root = root

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self, index: int | None = None) -> None:
        for i, node in enumerate(self.nodes):
            if index is not None and i != index:
                continue
            node.store.mkdir(parents=True, exist_ok=True)
            conf = self.root / f"{node.name}.conf"
            conf.write_text(nats_config(node, self.nodes, auth=False))
            node.proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        for i, node in enumerate(self.nodes):
            if (index is None or i == index) and node.proc is not None:
                wait_port(node.port, node.proc, timeout_s=WAIT_S)

    def kill(self, index: int) -> None:
        proc = self.nodes[index].proc
        assert proc is not None
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                node.proc.wait(10)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


# --- a submitter's view of the bus ------------------------------------------------------
class Client:
    """Submits tasks, counts their result events, reads their KV state (one connection,
    reconnecting forever like the services)."""

    def __init__(self) -> None:
        self.nc: nats.NATS | None = None
        self.result_events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.errors: list[str] = []

    async def connect(self, servers: list[str]) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(f"{type(exc).__name__}: {exc}")

        self.nc = await nats.connect(servers, **url_credentials(servers), max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                     error_cb=on_error, connect_timeout=5)

        async def on_event(msg: Any) -> None:
            data = json.loads(msg.data)
            if data.get("type") == "result":
                self.result_events[data["task_id"]].append(data["result"])

        await self.nc.subscribe(subjects.task_events("*"), cb=on_event)
        await self.nc.flush()
        return self

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def submit(self, task: TaskSubmit, retry_s: float = 60.0) -> Any:
        """Publish a task (deduplicated by id), retrying while the bus is away."""
        assert self.nc is not None
        js = self.nc.jetstream()
        end = time.monotonic() + retry_s
        while True:
            try:
                return await js.publish(subjects.TASK_SUBMIT, task.model_dump_json().encode(),
                                        headers={"Nats-Msg-Id": task.task_id}, timeout=5)
            except Exception:
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.5)

    async def state(self, task_id: str) -> TaskState | None:
        assert self.nc is not None
        try:
            kv = await self.nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)
            entry = await kv.get(task_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        except Exception:
            return None  # bus away or electing a leader: ask again later
        return TaskState.model_validate_json(entry.value) if entry.value else None

    async def wait_final(self, task_ids: list[str], timeout_s: float = WAIT_S) -> dict[str, TaskState]:
        """Every task's final state; fails listing the ones that never ended."""
        done: dict[str, TaskState] = {}
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for tid in [t for t in task_ids if t not in done]:
                state = await self.state(tid)
                if state is not None and state.status in FINAL_STATUSES:
                    done[tid] = state
            if len(done) == len(task_ids):
                return done
            await asyncio.sleep(0.5)
        missing = {t: (s.status if (s := await self.state(t)) else None) for t in task_ids if t not in done}
        raise AssertionError(f"{len(missing)} of {len(task_ids)} tasks never ended: {dict(list(missing.items())[:10])}")

    async def stream_messages(self, stream: str, subject: str) -> list[tuple[dict[str, str], bytes]]:
        """(headers, data) of every message of ``stream`` on ``subject`` (read, not consumed)."""
        assert self.nc is not None
        js = self.nc.jetstream()
        info = await js.stream_info(stream, subjects_filter=subject)
        out: list[tuple[dict[str, str], bytes]] = []
        count = sum((info.state.subjects or {}).values())  # read as many as it holds, not "until a second of quiet"
        if not count:
            return out
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=nats.js.api.DeliverPolicy.ALL)
        try:
            while len(out) < count:
                msg = await sub.next_msg(timeout=WAIT_S)
                out.append((dict(msg.headers or {}), msg.data))
        finally:
            await sub.unsubscribe()
        return out


def assert_exactly_one_result(states: dict[str, TaskState], client: Client) -> None:
    """Each task has one final status in its history, its result matches that status,
    and at most one result event went out for it (identical to the KV's)."""
    for tid, state in states.items():
        finals = [s for s, _ in state.history if s in FINAL_STATUSES]
        assert finals == [state.status], f"{tid}: final statuses recorded {finals}"
        assert state.result is not None and state.result.status == state.status, tid
        events = client.result_events.get(tid, [])
        assert len(events) <= 1, f"{tid}: {len(events)} result events"
        for ev in events:
            assert ev["status"] == state.status and ev["finished_at"] == state.result.finished_at, tid
