"""Ollama request bodies → model requests, and the NDJSON lines back (no bus)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.gateway import ollama_schema as osch
from services.gateway.routes.ollama import Ending, Lines, Piece
from shared.contracts import ToolCall

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def chat(**kw) -> osch.ChatRequest:
    return osch.ChatRequest.model_validate({"model": "qwen2_5-coder-1_5b:latest",
                                            "messages": [{"role": "user", "content": "hi"}], **kw})


def test_options_become_the_sampling_fields_and_the_tag_is_dropped() -> None:
    body = chat(options={"temperature": 0, "top_p": 0.9, "top_k": 20, "seed": 7, "stop": ["\n\n"], "num_predict": 64,
                         "num_ctx": 8192, "num_thread": 8, "mirostat": 1}, format="json", stream=False)
    req = osch.chat_to_generate(body, timeout_s=30)
    assert req.model == "qwen2_5-coder-1_5b"
    assert (req.temperature, req.top_p, req.top_k, req.seed, req.stop, req.max_tokens) == (0, 0.9, 20, 7, ["\n\n"], 64)
    assert req.json_schema == {"type": "object"} and req.stream is False and req.timeout_s == 30
    assert osch.chat_to_generate(chat(options={"num_predict": -1}), timeout_s=30).max_tokens is None
    assert osch.chat_to_generate(chat(options={"stop": "END"}), timeout_s=30).stop == ["END"]
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert osch.chat_to_generate(chat(format=schema), timeout_s=30).json_schema == schema


def test_tools_and_a_tool_round_trip_in_the_history() -> None:
    body = chat(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 C, sunny", "tool_name": "get_weather"},
    ])
    req = osch.chat_to_generate(body, timeout_s=30)
    assert [t.name for t in req.tools] == ["get_weather"] and req.tool_choice == "auto"
    call = req.messages[1].tool_calls[0]
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"}) and call.id
    assert (req.messages[2].role, req.messages[2].name, req.messages[2].content) == ("tool", "get_weather", "18 C, sunny")


def test_generate_uses_the_template_unless_raw() -> None:
    body = osch.GenerateBody.model_validate({"model": "m", "prompt": "Why?", "system": "Be brief."})
    req = osch.generate_to_generate(body, timeout_s=30)
    assert [(t.role, t.content) for t in req.messages] == [("system", "Be brief."), ("user", "Why?")]
    raw = osch.generate_to_generate(osch.GenerateBody(model="m", prompt="<|im_start|>user", raw=True), timeout_s=30)
    assert raw.prompt == "<|im_start|>user" and not raw.messages


@pytest.mark.parametrize(("body", "named"), [
    ({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, "images"),
    ({"think": True}, "thinking"),
    ({"logprobs": True}, "logprobs"),
    ({"options": {"temperature": 5}}, "temperature"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
])
def test_what_cannot_be_honoured_is_refused(body: dict, named: str) -> None:
    with pytest.raises(ValidationError) as err:
        osch.ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})
    assert named in str(err.value)


@pytest.mark.parametrize(("body", "named"), [
    ({"suffix": "return x"}, "suffix"), ({"template": "{{ .Prompt }}"}, "template"), ({"context": [1, 2]}, "context"),
])
def test_generate_refuses_template_suffix_and_context(body: dict, named: str) -> None:
    with pytest.raises(ValidationError) as err:
        osch.GenerateBody.model_validate({"model": "m", "prompt": "p", **body})
    assert named in str(err.value)


def test_num_predict_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="num_predict"):
        osch.chat_to_generate(chat(options={"num_predict": 0}), timeout_s=30)


def test_lines_stream_pieces_then_the_rest_and_the_counts() -> None:
    lines = Lines(chat(), "chat")
    first = lines.piece(Piece("text", text="Hel"))
    assert first["message"] == {"role": "assistant", "content": "Hel"} and first["done"] is False
    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})
    line = lines.piece(Piece("tool_call", tool_call=call))
    assert line["message"]["tool_calls"] == [{"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    end = Ending("Hello", [call], "stop", input_tokens=12, output_tokens=20, ttft_s=0.5, tokens_per_s=10.0)
    last = lines.final(end, whole=False)
    assert last["message"] == {"role": "assistant", "content": "lo"}  # the rest, the call not sent twice
    assert last["done"] is True and last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (12, 20)
    assert last["prompt_eval_duration"] == 500_000_000 and last["eval_duration"] == 2_000_000_000
    assert last["total_duration"] > 0 and last["created_at"].endswith("Z")
    whole = Lines(chat(), "chat").final(end, whole=True)
    assert whole["message"]["content"] == "Hello" and len(whole["message"]["tool_calls"]) == 1
    gen = Lines(osch.GenerateBody(model="m", prompt="p"), "generate")
    assert gen.piece(Piece("text", text="a"))["response"] == "a" and gen.loaded()["done_reason"] == "load"


def test_the_app_answers_in_ollamas_shape_even_without_the_bus(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from services.gateway.main import create_gateway
    from services.gateway.settings import GatewaySettings
    from tests.conftest import free_port

    settings = GatewaySettings(nats_url=f"nats://127.0.0.1:{free_port()}", state_dir=tmp_path, gateway_api_key="k")
    with TestClient(create_gateway(settings)) as client:
        auth = {"Authorization": "Bearer k"}
        assert client.get("/api/version", headers=auth).json() == {"version": osch.OLLAMA_API_VERSION}
        cases = [
            (client.post("/api/chat", json={"model": "m", "messages": []}, headers=auth), 503),
            (client.post("/api/pull", json={"model": "llama3"}, headers=auth), 501),
            (client.delete("/api/delete", headers=auth), 501),
            (client.post("/api/chat", content=b"{nope", headers=auth), 400),
            (client.post("/api/generate", json={"model": "m", "prompt": "p", "suffix": "s"}, headers=auth), 400),
            (client.get("/api/tags"), 401),
        ]
        for r, status in cases:
            assert r.status_code == status, (r.status_code, r.text)
            assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str) and r.json()["error"]
