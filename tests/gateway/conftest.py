"""A real stack for the gateway's integration tests, started once per module: a real
nats-server, the real router and two real gateway processes (a roomy one and one with
a single in-flight slot and a short deadline), with FakeAgents in place of the models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from shared import subjects
from shared.contracts import TaskState
from tests.conftest import WAIT_S, NatsServer, Services, free_port, wait_until
from tests.gateway.fake_agent import FakeAgents


@dataclass
class Gateway:
    url: str
    name: str

    @property
    def base(self) -> str:
        return f"{self.url}/v1"


@dataclass
class Stack:
    services: Services
    agents: FakeAgents
    main: Gateway
    small: Gateway
    nats_url: str

    def task_state(self, task_id: str) -> TaskState | None:
        async def get() -> TaskState | None:
            nc = await nats.connect(self.nats_url)
            try:
                kv = await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)
                try:
                    entry = await kv.get(task_id)
                except Exception:
                    return None
                return TaskState.model_validate_json(entry.value) if entry.value else None
            finally:
                await nc.close()

        return asyncio.run(get())

    def wait_status(self, task_id: str, statuses: set[str], timeout_s: float = WAIT_S) -> TaskState | None:
        """The task's state once its status is one of ``statuses`` (else the last seen)."""
        last: list[TaskState | None] = [None]

        def reached() -> bool:
            last[0] = self.task_state(task_id)
            return last[0] is not None and last[0].status in statuses

        with contextlib.suppress(TimeoutError):
            wait_until(reached, "", timeout_s)
        return last[0]


def wait_http(url: str, proc: Any, services: Services, name: str, timeout_s: float = WAIT_S) -> None:
    """Wait until the gateway ``name`` (started by ``services``) answers its /health."""
    services.wait_http(name, f"{url}/health", timeout_s)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("gw")
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    services = Services(server, state)
    agents = FakeAgents(server.url)
    try:
        services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
        services.wait_ready(["router"])  # streams and the KV bucket exist from here on
        agents.start()
        gateways = {}
        for name, extra in (
            ("gateway", {}),
            ("gateway-small", {"SYNDICATE_GATEWAY_MAX_INFLIGHT": "1", "SYNDICATE_GATEWAY_REQUEST_TIMEOUT_S": "3",
                               "SYNDICATE_GATEWAY_RETRY_AFTER_S": "7", "SYNDICATE_INSTANCE": "gateway-small"}),
        ):
            port = free_port()
            services.start(name, "services.gateway", SYNDICATE_GATEWAY_PORT=str(port), **extra)
            gateways[name] = Gateway(f"http://127.0.0.1:{port}", name)
        for name, gw in gateways.items():  # both start at once (a gateway's imports take seconds)
            services.wait_http(name, f"{gw.url}/health")
        yield Stack(services, agents, gateways["gateway"], gateways["gateway-small"], server.url)
    finally:
        agents.stop()
        services.stop()
        server.stop()
