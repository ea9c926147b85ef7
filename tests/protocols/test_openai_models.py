"""The agents' models served as models, through the official ``openai`` client against the
running stack (scripted models: the wording is the script's): the model list, function
calling as OpenAI documents it — a call, then the answer from the tool's result, streaming
and not — choices, refusals, and a client that leaves cancelling the generation."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import WAIT_S
from tests.protocols.conftest import (
    CODER_MODEL,
    KEY,
    REASONER_MODEL,
    WEATHER_RESULT,
    Stack,
)

pytestmark = pytest.mark.integration

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_models_and_agents_are_listed(stack: Stack) -> None:
    models = {m.id: m for m in client(stack).models.list()}
    assert {"syndicate", "coder", "reasoner", CODER_MODEL, REASONER_MODEL} <= set(models)
    card = models[CODER_MODEL].model_dump()
    assert (card["kind"], card["served_by"], card["owned_by"]) == ("model", ["coder-agent"], "syndicate")
    assert client(stack).models.retrieve(REASONER_MODEL).id == REASONER_MODEL
    with pytest.raises(openai.NotFoundError):
        client(stack).models.retrieve("no-such-model")


def test_a_tool_call_then_the_answer_from_its_result(stack: Stack) -> None:
    c = client(stack)
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = c.chat.completions.create(model=CODER_MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": WEATHER_RESULT}]
    second = c.chat.completions.create(model=CODER_MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == f"In Paris it is {WEATHER_RESULT}."
    assert second.usage is not None and second.usage.completion_tokens > 0


def test_streamed_tool_calls_assemble_with_the_sdk(stack: Stack) -> None:
    c = client(stack)
    with c.chat.completions.stream(model=CODER_MODEL, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                   messages=[{"role": "user", "content": "What is the weather in Paris?"}]) as s:
        done = s.get_final_completion()
    [call] = done.choices[0].message.tool_calls or []
    assert done.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(c.chat.completions.create(
        model=CODER_MODEL, stream=True, stream_options={"include_usage": True}, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What is the weather in Paris?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                      "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": WEATHER_RESULT}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == f"In Paris it is {WEATHER_RESULT}."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_choices_completions_and_plain_answers(stack: Stack) -> None:
    c = client(stack)
    many = c.chat.completions.create(model=CODER_MODEL, n=2, temperature=0.7, seed=1, stop=["\n\n\n"],
                                     messages=[{"role": "user", "content": "Write square(x)."}])
    assert [ch.index for ch in many.choices] == [0, 1] and all("x * x" in (ch.message.content or "") for ch in many.choices)
    assert many.model_extra and many.model_extra["syndicate"]["service"] == "coder-agent"
    done = c.completions.create(model=CODER_MODEL, prompt="def square(x):", max_tokens=64)
    assert "x * x" in done.choices[0].text


def test_refusals_name_the_reason(stack: Stack) -> None:
    c = client(stack)
    with pytest.raises(openai.BadRequestError, match="tools are served by the models"):
        c.chat.completions.create(model="coder", tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                  messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        c.chat.completions.create(model=CODER_MODEL, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                  tool_choice={"type": "function", "function": {"name": "launch"}},
                                  messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="not a valid JSON schema"):
        c.chat.completions.create(model=CODER_MODEL, messages=[{"role": "user", "content": "x"}],
                                  response_format={"type": "json_schema", "json_schema": {
                                      "name": "a", "schema": {"type": "objekt"}}})
    with pytest.raises(openai.NotFoundError, match=CODER_MODEL):  # the error lists what exists
        c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])


def test_a_required_call_the_model_does_not_write_is_an_error(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(
            model=CODER_MODEL, tools=[WEATHER_TOOL], tool_choice="required",  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Write square(x)."}])
    assert info.value.status_code == 500 and info.value.code == "tool_call_invalid"


def model_outcomes(stack: Stack) -> dict[str, float]:
    page = httpx.get(f"{stack.url}/metrics").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == "syndicate_model_requests_total" and s.labels.get("model") == REASONER_MODEL:
                out[s.labels["outcome"]] = out.get(s.labels["outcome"], 0) + s.value
    return out


def test_a_client_that_leaves_mid_stream_cancels_the_generation(stack: Stack) -> None:
    before = model_outcomes(stack).get("cancelled", 0)
    body = {"model": REASONER_MODEL, "stream": True, "messages": [{"role": "user", "content": "Tell me about it."}]}
    with httpx.stream("POST", f"{stack.url}/v1/chat/completions", json=body, headers=stack.headers(), timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first chunk: the generation runs; then leave
    end = time.monotonic() + WAIT_S  # the generation ends cancelled or, had it been missed, after ~12 s
    while time.monotonic() < end and model_outcomes(stack).get("cancelled", 0) <= before:
        time.sleep(0.3)
    assert model_outcomes(stack).get("cancelled", 0) == before + 1
