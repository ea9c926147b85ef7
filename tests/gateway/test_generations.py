"""Unit tests: an OpenAI request for a served model -> GenerateRequest, a GenerateReply ->
OpenAI bodies and stream chunks (tool calls as OpenAI documents them), no NATS."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.gateway import generations as gen
from services.gateway import http_errors as he
from services.gateway.openai_schema import ChatCompletionRequest, CompletionRequest
from shared.contracts import GenerateChoice, GenerateReply, InvalidToolCall, ToolCall, Usage
from shared.errors import EngineError, ModelUnavailable

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def chat(**kw: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "qwen", "messages": [{"role": "user", "content": "hi"}], **kw})


def test_sampling_fields_and_tools_carry_over() -> None:
    req = gen.to_generate(chat(temperature=0.2, top_p=0.9, seed=4, stop="END", n=2, max_completion_tokens=50,
                               presence_penalty=0.1, top_k=20, tools=[WEATHER], parallel_tool_calls=False,
                               tool_choice={"type": "function", "function": {"name": "get_weather"}}),
                          timeout_s=30)
    assert (req.model, req.temperature, req.top_p, req.seed, req.stop, req.n, req.max_tokens) == (
        "qwen", 0.2, 0.9, 4, ["END"], 2, 50)
    assert (req.presence_penalty, req.top_k, req.timeout_s) == (0.1, 20, 30)
    assert (req.tool_choice, req.tool_name, req.parallel_tool_calls) == ("function", "get_weather", False)
    assert req.tools[0].parameters["required"] == ["city"]
    assert gen.to_generate(chat(), timeout_s=1).temperature == 0.8  # unset: the engine default
    assert gen.to_generate(chat(tools=[WEATHER], tool_choice="required"), timeout_s=1).tool_choice == "required"


def test_history_with_calls_and_results_becomes_turns() -> None:
    req = gen.to_generate(chat(messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]), timeout_s=1)
    assert [t.role for t in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[2].tool_calls == [ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})]
    assert (req.messages[3].tool_call_id, req.messages[3].content) == ("c1", "sunny")


def test_arguments_that_are_not_json_are_refused() -> None:
    with pytest.raises(ValueError, match=r"messages.1.tool_calls.0.function.arguments is not JSON"):
        gen.to_generate(chat(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]), timeout_s=1)


@pytest.mark.parametrize(("fmt", "schema"), [
    ({"type": "json_object"}, {"type": "object"}),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}, {"type": "array"}),
    ({"type": "text"}, None),
])
def test_response_formats_become_a_schema(fmt: dict, schema: dict | None) -> None:
    assert gen.to_generate(chat(response_format=fmt), timeout_s=1).json_schema == schema


def test_a_completion_is_a_raw_prompt() -> None:
    body = CompletionRequest.model_validate({"model": "qwen", "prompt": "def f():", "max_tokens": 5, "n": 3})
    req = gen.to_generate(body, timeout_s=1)
    assert (req.prompt, req.messages, req.max_tokens, req.n) == ("def f():", [], 5, 3)


@pytest.mark.parametrize("bad", [
    {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}},
    {"tool_choice": "required"},
    {"logprobs": True},
    {"functions": [{"name": "f"}]},
    {"n": 9},
])
def test_model_requests_refuse_what_cannot_be_honoured(bad: dict) -> None:
    with pytest.raises(ValidationError):
        chat(**bad)


def reply(*choices: GenerateChoice) -> GenerateReply:
    return GenerateReply(request_id="g-1", model="qwen", service="coder-agent", instance="i", choices=list(choices),
                         usage=Usage(input_tokens=7, output_tokens=5, seconds=1.0, ttft_s=0.1), tokens_per_s=5.0)


CALL = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})


def test_a_tool_call_body_is_openai_shaped() -> None:
    body = gen.final_body("chat", "qwen", reply(GenerateChoice(tool_calls=[CALL], finish_reason="tool_calls")))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert body["id"] == "chatcmpl-g-1" and body["syndicate"]["service"] == "coder-agent"


def test_a_broken_call_is_text_and_flagged() -> None:
    bad = InvalidToolCall(raw='{"name": "x"}', error="no tool named 'x'", name="x")
    body = gen.final_body("chat", "qwen", reply(GenerateChoice(text='<tool_call>{"name": "x"}</tool_call>',
                                                               invalid_tool_calls=[bad])))
    assert body["choices"][0]["message"]["content"].startswith("<tool_call>")
    assert body["syndicate"]["invalid_tool_calls"] == [{"index": 0, **bad.model_dump()}]


def chunks(parts: list[bytes]) -> list[dict]:
    out = []
    for p in parts:
        data = p.decode().removeprefix("data: ").strip()
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_stream_chunks_open_each_choice_then_fill_what_was_lost() -> None:
    w = gen.ChunkWriter("chat", "qwen", "g-1", include_usage=True)
    parts = [w.text_piece(0, "Hel"), w.tool_call(1, CALL)]
    done = reply(GenerateChoice(index=0, text="Hello"),
                 GenerateChoice(index=1, tool_calls=[CALL, CALL.model_copy(update={"id": "call_2"})],
                                finish_reason="tool_calls"))
    out = chunks(parts + w.ending(done))
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in out[:-2]]
    assert deltas[0] == (0, {"role": "assistant", "content": "Hel"}, None)
    assert deltas[1][1]["role"] == "assistant" and deltas[1][1]["tool_calls"][0]["index"] == 0
    assert deltas[2] == (0, {"content": "lo"}, None)  # the text a lost event held
    assert deltas[3] == (0, {}, "stop")
    assert deltas[4][1]["tool_calls"][0] | {"index": 1} == deltas[4][1]["tool_calls"][0]  # the lost second call
    assert deltas[5] == (1, {}, "tool_calls")
    assert out[-2]["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12} and out[-1] == "[DONE]"


def test_a_prompt_longer_than_the_context_is_a_400() -> None:
    err = he.from_exception(EngineError("prompt of 5000 tokens does not fit", detail={"n_ctx": 4096}), 2)
    assert (err.status, err.code) == (400, "context_length_exceeded")
    assert he.from_exception(EngineError("boom"), 2).status == 500


def test_no_model_server_is_a_503() -> None:
    err = he.from_exception(ModelUnavailable("no process serves the model 'x' now"), 2)
    assert (err.status, err.code) == (503, "model_unavailable")
