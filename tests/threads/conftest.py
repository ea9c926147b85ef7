"""A real nats-server and router (subprocesses) with FakeAgents in place of the models,
started once per module, for the thread and review tests; the CLI runs as the user runs
it, and a bus client reads the task and thread records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from faststream.nats import NatsBroker

from shared.contracts import AgentJob, TaskResult, TaskState, TaskSubmit, ThreadRecord
from shared.task_client import TaskClient
from tests.conftest import WAIT_S, NatsServer, Services, wait_until, write_script
from tests.gateway.fake_agent import FakeAgents


@dataclass
class Stack:
    services: Services
    agents: FakeAgents | None
    url: str

    def cli(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        return self.services.cli(*args, timeout=timeout)

    def cli_json(self, *args: str, code: int | None = None) -> dict[str, Any]:
        """A command's last line of output as JSON (``code``: the exit code it must have)."""
        out = self.cli(*args, "--json")
        assert code is None or out.returncode == code, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    def bus(self, work: Any) -> Any:
        """Run ``work(client)`` with a TaskClient on a fresh connection."""

        async def go() -> Any:
            async with connected(self.url) as broker:
                return await work(TaskClient(broker, poll_s=0.3))

        return asyncio.run(go())

    def run(self, task: TaskSubmit, *, wait: bool = True) -> TaskResult | None:
        """Submit ``task`` on the bus; its result or first pause for review (``wait``)."""

        async def go(client: TaskClient) -> TaskResult | None:
            follow = await client.submit(task)
            try:
                return await follow.wait(until_review=True) if wait else None
            finally:
                await follow.close()

        return self.bus(go)

    def review(self, task_id: str, decision: str, feedback: str = "") -> TaskResult | None:
        """Decide a paused task on the bus; its result or next pause."""

        async def go(client: TaskClient) -> TaskResult | None:
            state = await client.state(task_id)
            assert state is not None
            follow = await client.follow(state)
            try:
                await client.review(task_id, decision, feedback, reviewer="test")
                return await follow.wait(until_review=True)
            finally:
                await follow.close()

        return self.bus(go)

    def state(self, task_id: str) -> TaskState | None:
        return self.bus(lambda c: c.state(task_id))

    def thread(self, key: str) -> ThreadRecord | None:
        return self.bus(lambda c: c.thread(key))

    def wait_status(self, task_id: str, status: str, timeout_s: float = WAIT_S) -> TaskState:
        def reached() -> TaskState | None:
            state = self.state(task_id)
            return state if state is not None and state.status == status else None

        def last() -> str:
            state = self.state(task_id)
            return f"{task_id} never reached {status}: {state.status if state else None}"

        return wait_until(reached, last, timeout_s)

    def jobs_of(self, task_id: str) -> list[AgentJob]:
        assert self.agents is not None
        return [j for j in self.agents.jobs if j.task_id == task_id]

    def restart_router(self) -> None:
        """kill -9 the router and start a new one on the same bus and state."""
        proc = self.services.procs["router"]
        proc.kill()
        proc.wait(10)
        start_router(self.services)


def start_router(services: Services) -> None:
    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0", SYNDICATE_DEADLINE_SWEEP_S="0.2")
    services.wait_ready(["router"])


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[NatsBroker]:
    broker = NatsBroker(url)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("threads")
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    services = Services(server, state)
    agents = FakeAgents(server.url)
    try:
        start_router(services)  # declares the streams and buckets the fake agents consume
        agents.start()
        yield Stack(services, agents, server.url)
    finally:
        agents.stop()
        services.stop()
        server.stop()


@pytest.fixture(scope="module")
def code_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The router, code-sandbox and a real coder-agent whose scripted model answers the
    test module's ``CODER_REPLIES`` in order (one candidate a round, no tests written)."""
    root = tmp_path_factory.mktemp("code-threads")
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    services = Services(server, state)
    try:
        start_router(services)
        services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
        services.start("coder-agent", "services.coder_agent",
                       SYNDICATE_ENGINE_SCRIPT=write_script(root / "coder.json", request.module.CODER_REPLIES),
                       SYNDICATE_CANDIDATES="1", SYNDICATE_SAMPLES="1", SYNDICATE_WRITE_TESTS="false")
        services.wait_ready(["code-sandbox", "coder-agent"])
        yield Stack(services, None, server.url)
    finally:
        services.stop()
        server.stop()
