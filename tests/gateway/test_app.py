"""The HTTP app with no reachable NATS (in-process, no server): auth, validation and
the 503 a client gets while the bus is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.gateway.main import create_gateway
from services.gateway.settings import GatewaySettings
from tests.conftest import free_port

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def make_client(tmp_path) -> Iterator:
    clients: list[TestClient] = []

    def make(**kw) -> TestClient:
        # A port nothing listens on: the bus stays down for the whole test.
        settings = GatewaySettings(nats_url=f"nats://127.0.0.1:{free_port()}", state_dir=tmp_path, **kw)
        client = TestClient(create_gateway(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_settings_read_the_gateway_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATE_GATEWAY_PORT", "9123")
    monkeypatch.setenv("SYNDICATE_GATEWAY_MAX_INFLIGHT", "3")
    monkeypatch.setenv("SYNDICATE_GATEWAY_API_KEY", "k")
    s = GatewaySettings()
    assert (s.gateway_port, s.gateway_max_inflight, s.gateway_api_key) == (9123, 3, "k")
    assert s.gateway_url == "http://127.0.0.1:9123"


def test_bus_down_is_503_and_health_says_so(make_client) -> None:
    client = make_client()
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "bus_unavailable"
    assert client.post("/v1/embeddings", json={"model": "m", "input": "x"}).status_code == 503
    assert client.get("/health").status_code == 503


def test_invalid_body_is_400_even_without_the_bus(make_client) -> None:
    client = make_client()
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/completions", json={"model": "coder"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    # Not an agent: maybe a served model, which only the bus can tell.
    r = client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "bus_unavailable"


def test_bearer_auth_when_a_key_is_set(make_client) -> None:
    client = make_client(gateway_api_key="s3cret")
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert [m["id"] for m in ok.json()["data"]] == ["syndicate", "coder", "reasoner"]
    assert client.get("/v1/models/coder", headers={"Authorization": "Bearer s3cret"}).json()["task_kind"] == "code"
    assert client.get("/metrics").status_code == 200  # scrapers need no key


def test_metrics_page_without_the_bus_still_has_gateway_series(make_client) -> None:
    client = make_client()
    client.post("/v1/chat/completions", json=CHAT)
    text = client.get("/metrics").text
    assert 'syndicate_gateway_requests_total{code="503",endpoint="/v1/chat/completions"} 1.0' in text
    assert "syndicate_gateway_inflight_tasks 0.0" in text


async def test_shutdown_stops_a_task_that_swallows_a_cancel() -> None:
    """nats-py's connect loop can lose a cancel (an inner wait_for finishing as it lands, on
    Python 3.11); the gateway's shutdown sends another instead of waiting for ever."""
    import asyncio

    from services.gateway.main import stop_task

    swallowed = asyncio.Event()

    async def connect_loop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # lost, as in the race: the loop goes on retrying
        await asyncio.Event().wait()

    task = asyncio.ensure_future(connect_loop())
    await asyncio.sleep(0)
    assert await stop_task(task, wait_s=0.05) and swallowed.is_set() and task.cancelled()
    never = asyncio.ensure_future(asyncio.Event().wait())
    assert not await stop_task(never, cancel=False, wait_s=0.01, tries=2)  # bounded, not cancelled
    never.cancel()
