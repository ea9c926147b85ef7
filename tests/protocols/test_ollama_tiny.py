"""The Ollama API's options reaching the real engine, with the official ``ollama`` client: a
real nats-server, coder-agent holding the tiny random-weight model (real llama.cpp: its
grammar, sampler and token counts; its words are gibberish) and the gateway. ``format``
(a JSON schema) comes back as JSON of that schema, ``num_predict`` is the number of tokens
generated, a ``seed`` repeats a sampled answer, ``/api/ps`` reports the served context and
``/api/tags`` the file's facts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from shared.llm.tiny import TinySpec, write_tiny_model
from tests.conftest import NatsServer, Services, free_port
from tests.gateway.conftest import wait_http

pytestmark = pytest.mark.integration

N_CTX = 1536
SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}, "ok": {"type": "boolean"}},
          "required": ["age", "ok"]}
ASK = [{"role": "user", "content": "How old is Ollama? Answer in JSON."}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ollama.Client, str]]:
    root: Path = tmp_path_factory.mktemp("ollama-tiny")
    model = write_tiny_model(root / "tiny-chat.gguf", TinySpec(seed=3))
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    services = Services(server, state)
    try:
        services.start("coder-agent", "services.coder_agent", SYNDICATE_MODEL_CODER_PATH=str(model),
                       SYNDICATE_MODEL_CODER_N_CTX=str(N_CTX), SYNDICATE_MODEL_CODER_SLOTS="2")
        port = free_port()
        proc = services.start("gateway", "services.gateway", SYNDICATE_GATEWAY_PORT=str(port))
        url = f"http://127.0.0.1:{port}"
        wait_http(url, proc, services, "gateway")
        services.wait_ready(["coder-agent", "gateway"])
        yield ollama.Client(host=url, timeout=120), model.stem
    finally:
        services.stop()
        server.stop()


def test_format_num_predict_and_seed_reach_the_engine(tiny: tuple[ollama.Client, str]) -> None:
    client, name = tiny
    shaped = client.chat(model=name, messages=ASK, format=SCHEMA, options={"temperature": 0, "num_predict": 200})
    answer = json.loads(shaped.message.content or "")  # random weights, constrained by the schema's grammar
    assert set(answer) == {"age", "ok"} and isinstance(answer["age"], int) and isinstance(answer["ok"], bool)

    cut = client.generate(model=name, prompt="Count to ten.", options={"temperature": 0, "num_predict": 7})
    assert (cut.eval_count, cut.done_reason) == (7, "length")  # the tiny model never stops by itself
    assert cut.prompt_eval_count and cut.prompt_eval_count > 0 and cut.eval_duration and cut.eval_duration > 0

    sampled = [client.chat(model=name, messages=ASK, options={"temperature": 0.9, "seed": 11, "num_predict": 12})
               .message.content for _ in range(2)]
    other = client.chat(model=name, messages=ASK, options={"temperature": 0.9, "seed": 12, "num_predict": 12})
    assert sampled[0] == sampled[1] and sampled[0] != other.message.content


def test_ps_and_tags_describe_the_served_file(tiny: tuple[ollama.Client, str]) -> None:
    client, name = tiny
    [loaded] = [m for m in client.ps().models if m.model == f"{name}:latest"]
    assert loaded.context_length == N_CTX and loaded.size and loaded.size > 0
    [tag] = [m for m in client.list().models if m.model == f"{name}:latest"]
    assert tag.details is not None and tag.details.format == "gguf" and tag.details.family == "llama"
    assert client.show(name).modelinfo["general.architecture"] == "llama"
