"""The gateway's Ollama API against the running stack, with the official ``ollama`` client
(scripted models: the wording is the script's): the model list and what is loaded where,
chat and generate streamed and not, a tool call then the answer from its result, the
agents as models, embeddings, and the errors a client gets — in Ollama's shape."""

from __future__ import annotations

import json
import time

import httpx
import ollama
import pytest

from tests.conftest import WAIT_S
from tests.protocols.conftest import (
    CODE,
    CODER_MODEL,
    KEY,
    REASONER_MODEL,
    WEATHER_RESULT,
    Stack,
)
from tests.protocols.test_openai_models import model_outcomes

pytestmark = pytest.mark.integration

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def client(stack: Stack, key: str | None = KEY) -> ollama.Client:
    return ollama.Client(host=stack.url, headers=stack.headers(key), timeout=60)


def test_list_ps_show_and_version(stack: Stack) -> None:
    c = client(stack)
    names = {m.model for m in c.list().models}
    assert {f"{CODER_MODEL}:latest", f"{REASONER_MODEL}:latest", "syndicate:latest", "coder:latest"} <= names
    ps = {m.model: m for m in c.ps().models}
    coder = ps[f"{CODER_MODEL}:latest"]
    assert coder.size_vram == 0 and coder.expires_at is None
    raw = httpx.get(f"{stack.url}/api/ps", headers=stack.headers()).json()["models"]  # the client drops extras
    [instance] = next(m for m in raw if m["model"] == f"{CODER_MODEL}:latest")["syndicate"]["instances"]
    assert instance["service"] == "coder-agent" and instance["cpus"] and instance["slots"] >= 1  # where it runs
    shown = c.show(CODER_MODEL)
    assert "completion" in (shown.capabilities or []) and shown.details is not None
    assert c.show("coder").capabilities == ["completion"]  # an agent: text in, text out
    assert httpx.get(f"{stack.url}/api/version", headers=stack.headers()).json()["version"]


def test_chat_and_generate_whole_and_streamed(stack: Stack) -> None:
    c = client(stack)
    whole = c.chat(model=f"{CODER_MODEL}:latest", messages=[{"role": "user", "content": "Write square(x)."}],
                   options={"temperature": 0, "seed": 1, "num_predict": 256, "num_ctx": 8192, "num_thread": 4},
                   keep_alive="10m")
    assert whole.message.role == "assistant" and whole.message.content == CODE
    assert whole.done and whole.done_reason == "stop" and whole.model == f"{CODER_MODEL}:latest"
    assert whole.eval_count and whole.eval_count > 0 and whole.prompt_eval_count and whole.prompt_eval_count > 0
    assert whole.total_duration and whole.total_duration > 0 and whole.load_duration == 0

    parts = list(c.chat(model=CODER_MODEL, messages=[{"role": "user", "content": "Write square(x)."}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == CODE
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done and parts[-1].eval_count

    gen = c.generate(model=CODER_MODEL, prompt="Write square(x).", system="Be brief.")
    assert gen.response == CODE and gen.done_reason == "stop"
    streamed = "".join(p.response or "" for p in c.generate(model=CODER_MODEL, prompt="Write square(x).", stream=True))
    assert streamed == CODE
    assert c.generate(model=CODER_MODEL).done_reason == "load"  # a load request: loaded already


def test_a_tool_call_then_the_answer_from_its_result(stack: Stack) -> None:
    c = client(stack)
    first = c.chat(model=CODER_MODEL, messages=ASK, tools=[WEATHER_TOOL])
    [call] = first.message.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", {"city": "Paris"})  # an object
    assert first.done_reason == "stop" and not first.message.content
    history = [*ASK, first.message, {"role": "tool", "content": WEATHER_RESULT, "tool_name": "get_weather"}]
    second = c.chat(model=CODER_MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.message.content == f"In Paris it is {WEATHER_RESULT}." and not second.message.tool_calls

    parts = list(c.chat(model=CODER_MODEL, messages=ASK, tools=[WEATHER_TOOL], stream=True))
    calls = [tc for p in parts for tc in p.message.tool_calls or []]
    assert [(tc.function.name, dict(tc.function.arguments)) for tc in calls] == [("get_weather", {"city": "Paris"})]
    assert parts[-1].done


def test_a_client_that_leaves_mid_stream_cancels_the_generation(stack: Stack) -> None:
    before = model_outcomes(stack).get("cancelled", 0)
    body = {"model": REASONER_MODEL, "messages": [{"role": "user", "content": "Tell me about it."}]}  # streams
    with httpx.stream("POST", f"{stack.url}/api/chat", json=body, headers=stack.headers(), timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        assert json.loads(next(r.iter_lines()))["done"] is False  # the first line: the generation runs; leave
    end = time.monotonic() + WAIT_S  # the generation ends cancelled or, had it been missed, after ~12 s
    while time.monotonic() < end and model_outcomes(stack).get("cancelled", 0) <= before:
        time.sleep(0.3)
    assert model_outcomes(stack).get("cancelled", 0) == before + 1


def test_the_agents_answer_as_models(stack: Stack) -> None:
    reply = client(stack).chat(model="coder", messages=[{"role": "user", "content": "Write square(x)."}], stream=False)
    assert "def square" in (reply.message.content or "") and reply.done and reply.eval_count
    parts = list(client(stack).generate(model="coder:latest", prompt="Write square(x).", stream=True))
    assert "def square" in "".join(p.response or "" for p in parts) and parts[-1].done
    with pytest.raises(ollama.ResponseError) as err:
        client(stack).chat(model="coder", messages=ASK, tools=[WEATHER_TOOL])
    assert err.value.status_code == 400 and "tools are served by the models" in err.value.error


def test_embed_and_the_legacy_embeddings(stack: Stack) -> None:
    c = client(stack)
    [embedder] = [m.model for m in c.list().models if m.details and m.details.family == "embedding"]
    assert embedder and c.show(embedder).capabilities == ["embedding"]
    out = c.embed(model=embedder, input=["agents on NATS", "pinned cores"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) > 0 and out.model == embedder
    assert len(c.embeddings(model=embedder, prompt="agents on NATS").embedding) == len(out.embeddings[0])
    with pytest.raises(ollama.ResponseError) as err:
        c.embed(model="nomic-embed-text", input="x")
    assert err.value.status_code == 400 and embedder.removesuffix(":latest") in err.value.error  # names the embedder


def test_errors_are_ollamas_shape_with_the_right_status(stack: Stack) -> None:
    c = client(stack)
    cases = [
        (lambda: c.chat(model="no-such-model", messages=ASK), 404, "not found"),
        (lambda: c.pull("llama3"), 501, "not served"),
        (lambda: c.delete("llama3"), 501, "not served"),
        (lambda: c.chat(model=CODER_MODEL, messages=ASK, think=True), 400, "thinking"),
        (lambda: c.generate(model=CODER_MODEL, prompt="x", suffix="y"), 400, "suffix"),
        (lambda: c.chat(model=CODER_MODEL, messages=ASK, options={"temperature": 9}), 400, "temperature"),
        (lambda: c.generate(model=CODER_MODEL, keep_alive=0), 400, "loaded"),
        (lambda: client(stack, key=None).list(), 401, "API key"),
    ]
    for call, status, words in cases:
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == status, (status, err.value)
        assert words in err.value.error and isinstance(err.value.error, str)
    assert c.list().models  # still serving
