"""One real stack for the protocol tests, started once: a real OpenTelemetry collector
(rotel), a real nats-server, the router, code-sandbox (full isolation), the retriever
(hashing embedder), coder-agent and reasoner-agent on scripted models, and a gateway
with an API key and one folder it may ingest; every service exports its spans to the
collector. The coder answers at once; the reasoner is slow (seconds per answer), so a
reason task can be cancelled while it runs. The coder's model also answers model requests
by rules (MODEL_RULES): a tool call for the weather or a product, the answer from the
tool's result, code for everything else."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from a2a.client import Client as A2AClient
from a2a.client import ClientConfig, ClientFactory
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import NatsServer, Services, free_port, write_script
from tests.gateway.conftest import wait_http
from tests.protocols.collector import Collector

KEY = "protocol-test-key"
# One reply serves as code and as its tests: definitions plus asserts, so every code task passes.
CODE = "```python\ndef square(x):\n    return x * x\n\n\nassert square(3) == 9\n```"
SENTENCE = "The syndicate routes every task over NATS to an agent pinned to its own cores. "
CODER_MODEL, REASONER_MODEL = "scripted-coder", "scripted-reasoner"  # the agents' models, by name


def tool_call(name: str, **arguments: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


WEATHER_RESULT, PRODUCT = "22 C and sunny", 1234 * 5678
# Model requests reach the coder's scripted model too: it answers by the last message.
MODEL_RULES = [
    {"when": WEATHER_RESULT, "reply": f"In Paris it is {WEATHER_RESULT}."},
    {"when": str(PRODUCT), "reply": f"1234 times 5678 is {PRODUCT}."},
    {"when": "weather in Paris", "reply": tool_call("get_weather", city="Paris")},
    {"when": "1234 times 5678", "reply": tool_call("multiply", a=1234, b=5678)},
    {"reply": CODE},
]
NOTE = f"# Routing\n\n{SENTENCE}\nAgents stream their tokens back as task events.\n"


@dataclass
class Stack:
    services: Services
    collector: Collector
    url: str
    docs: Path  # the folder the gateway may ingest

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def headers(self, key: str | None = KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("protocols")
    collector = Collector(root / "collector")
    collector.start()
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    docs = root / "allowed" / "docs"
    docs.mkdir(parents=True)
    (docs / "routing.md").write_text(NOTE)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
    services = Services(server, state)
    try:
        services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0", **otel)
        services.wait_ready(["router"])  # streams and the task-state bucket exist from here on
        services.start("code-sandbox", "services.code_sandbox", **otel)
        services.start("retriever", "services.retriever", SYNDICATE_EMBEDDER="hashing", **otel)
        services.start("coder-agent", "services.coder_agent", SYNDICATE_ENGINE_SCRIPT=write_script(root / "coder.json", MODEL_RULES),
                       **otel)
        services.start("reasoner-agent", "services.reasoner_agent",
                       SYNDICATE_ENGINE_SCRIPT=write_script(root / "reasoner.json", [SENTENCE * 20]),
                       SYNDICATE_ENGINE_SCRIPT_DELAY="0.03", **otel)
        port = free_port()
        proc = services.start("gateway", "services.gateway", SYNDICATE_GATEWAY_PORT=str(port), SYNDICATE_GATEWAY_API_KEY=KEY,
                              SYNDICATE_GATEWAY_INGEST_ROOTS=str(root / "allowed"), **otel)
        url = f"http://127.0.0.1:{port}"
        wait_http(url, proc, services, "gateway")
        services.wait_ready(["code-sandbox", "retriever", "coder-agent", "reasoner-agent", "gateway"])
        yield Stack(services, collector, url, docs)
    finally:
        services.stop()
        server.stop()
        collector.stop()


@contextlib.asynccontextmanager
async def mcp_client(stack: Stack, key: str | None = KEY, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    """The official MCP client over streamable HTTP, with the gateway's API key (``mode``
    "legacy": the initialize handshake and a session, as pre-2026 clients do; ``options``:
    the client's, e.g. an elicitation callback)."""
    http = httpx2.AsyncClient(headers=stack.headers(key), timeout=httpx2.Timeout(30, read=300))
    transport = streamable_http_client(stack.mcp_url, http_client=http)  # type: ignore[arg-type]
    async with http, Client(transport, mode=mode, **options) as client:
        yield client


@contextlib.asynccontextmanager
async def a2a_client(stack: Stack, agent: str | None = None, *, streaming: bool = True,
                     key: str | None = KEY, headers: dict[str, str] | None = None) -> AsyncIterator[A2AClient]:
    """The official A2A client for the syndicate's card (or one agent's), found at the
    well-known path like any A2A client finds it."""
    http = httpx.AsyncClient(headers={**stack.headers(key), **(headers or {})}, timeout=60)
    async with http:
        factory = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http))
        base = stack.url if agent is None else f"{stack.url}/a2a/{agent}"
        client = await factory.create_from_url(base)
        async with client:
            yield client
