"""Unit tests: OpenAI request -> TaskSubmit, TaskResult -> error objects and bodies,
stream assembly, metrics bookkeeping (no NATS)."""

from __future__ import annotations

import base64
import struct

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from services.gateway import completions as cm
from services.gateway import http_errors as he
from services.gateway.metrics import GatewayMetrics, merge_expositions
from services.gateway.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from services.gateway.routes.embeddings import encode_vector
from shared.contracts import (
    Attempt,
    ErrorInfo,
    MetricsReply,
    SandboxRunSummary,
    TaskResult,
    Usage,
)
from shared.errors import BusError, DeadlineExceeded, Overloaded, QueueFull
from shared.metrics import ServiceMetrics


def chat(**kw) -> ChatCompletionRequest:
    body = {"model": "syndicate", "messages": [{"role": "user", "content": "hi"}], **kw}
    return ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize(("model", "kind"), [("coder", "code"), ("reasoner", "reason"), ("syndicate", "auto")])
def test_model_maps_to_task_kind(model: str, kind: str) -> None:
    task = cm.to_task(chat(model=model), timeout_s=42)
    assert task.kind == kind
    assert task.timeout_s == 42


def test_last_user_message_leads_and_earlier_turns_follow_as_context() -> None:
    req = chat(messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Write add(a, b)."},
        {"role": "assistant", "content": "def add(a, b): return a + b"},
        {"role": "user", "content": [{"type": "text", "text": "Now add tests."}]},
    ])
    text = cm.to_task(req, timeout_s=10).text
    assert text.startswith("Now add tests.")
    context = text.split("Earlier conversation (context):\n", 1)[1]
    assert context.splitlines() == [
        "[system] You are terse.", "[user] Write add(a, b).", "[assistant] def add(a, b): return a + b",
    ]


def test_single_message_is_the_text_and_max_tokens_carry_over() -> None:
    assert cm.to_task(chat(), timeout_s=1).text == "hi"
    assert cm.to_task(chat(max_tokens=33), timeout_s=1).max_tokens == 33
    assert cm.to_task(chat(max_tokens=33, max_completion_tokens=44), timeout_s=1).max_tokens == 44
    assert cm.to_task(chat(collection="docs"), timeout_s=1).collection == "docs"
    comp = CompletionRequest.model_validate({"model": "coder", "prompt": ["def f():"], "max_tokens": 5})
    task = cm.to_task(comp, timeout_s=1)
    assert (task.text, task.kind, task.max_tokens) == ("def f():", "code", 5)


@pytest.mark.parametrize("bad", [
    {"messages": []},
    {"messages": [{"role": "system", "content": "only a system prompt"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"n": 2},
    {"tools": [{"type": "function", "function": {"name": "f"}}]},
    {"response_format": {"type": "json_object"}},
    {"max_tokens": 0},
    {"temperature": 3},
])
def test_invalid_chat_requests_are_refused(bad: dict) -> None:
    body = {"model": "syndicate", "messages": [{"role": "user", "content": "hi"}], **bad}
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(body)


def test_unknown_fields_are_ignored() -> None:
    assert chat(presence_penalty=0.5, seed=3, stream=True).stream is True


def test_validation_error_becomes_a_400_object_with_param() -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({"model": "coder", "messages": "nope"})
    err = he.invalid_request(info.value)
    assert err.status == 400
    body = err.body()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == "messages"


def test_too_long_text_breaks_the_task_contract() -> None:
    with pytest.raises(ValidationError):
        cm.to_task(chat(messages=[{"role": "user", "content": "x" * 200_001}]), timeout_s=1)


def result(status: str, code: str | None = None, **kw) -> TaskResult:
    err = ErrorInfo(code=code, message=f"{code} happened") if code else None
    return TaskResult(task_id="t-1", status=status, kind="code", error=err, **kw)


@pytest.mark.parametrize(("res", "status", "code"), [
    (result("failed", "queue_full"), 429, "queue_full"),
    (result("rejected", "queue_full"), 429, "queue_full"),
    (result("rejected", "overloaded"), 429, "overloaded"),  # the router's admission limit
    (result("timeout", "timeout"), 504, "timeout"),
    (result("cancelled", "cancelled"), 409, "cancelled"),
    (result("failed", "engine_error"), 500, "engine_error"),
    (result("rejected", "invalid_payload"), 400, "invalid_payload"),
    (result("failed", "model_unavailable"), 503, "model_unavailable"),
])
def test_task_outcomes_map_to_http_status(res: TaskResult, status: int, code: str) -> None:
    err = he.from_result(res, retry_after_s=3)
    assert err is not None and err.status == status and err.code == code
    assert ("Retry-After" in err.headers) == (status == 429)
    assert "t-1" in err.message


def test_done_is_no_error() -> None:
    assert he.from_result(result("done"), retry_after_s=3) is None


def test_exceptions_map_to_http_status() -> None:
    assert he.from_exception(QueueFull("full"), 4).headers == {"Retry-After": "4"}
    overloaded = he.from_exception(Overloaded("the task queue is full"), 4)  # a full TASKS stream
    assert (overloaded.status, overloaded.code, overloaded.headers) == (429, "overloaded", {"Retry-After": "4"})
    assert he.from_exception(BusError("down"), 4).status == 503
    assert he.from_exception(DeadlineExceeded("late"), 4).status == 504
    assert he.from_exception(RuntimeError("boom"), 4).status == 500


@pytest.mark.parametrize(("streamed", "answer", "rest"), [
    ("Hello wor", "Hello world", "ld"),
    ("Hello world", "Hello world", ""),
    ("Hello world\n", "Hello world", ""),
    ("", "Hello", "Hello"),
    ("draft code", "```python\nfinal```", "\n\n```python\nfinal```"),
    ("something", "", ""),
])
def test_stream_remainder(streamed: str, answer: str, rest: str) -> None:
    assert cm.remainder(streamed, answer) == rest


def test_chunks_and_final_body_have_openai_shapes() -> None:
    res = result("done", answer="hi there", usage=Usage(input_tokens=3, output_tokens=2))
    body = cm.final_body("chat", "coder", res)
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-t-1"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi there"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert body["syndicate"]["unverified"] is False
    res.unverified = True  # done, but only the model's own tests stood behind the code
    assert cm.final_body("chat", "coder", res)["syndicate"]["unverified"] is True
    assert cm.usage_chunk("chat", "coder", res, 0)["syndicate"]["unverified"] is True
    first = cm.chunk("chat", "coder", "t-1", 0, text="", role=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    last = cm.chunk("chat", "coder", "t-1", 0, finish="stop")
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "stop"
    text = cm.chunk("completion", "coder", "t-1", 0, text="ab")
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "ab"
    assert cm.sse("[DONE]") == b"data: [DONE]\n\n"


def test_embedding_input_and_base64_vectors() -> None:
    assert EmbeddingRequest.model_validate({"model": "m", "input": "a"}).texts() == ["a"]
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "m", "input": [[1, 2, 3]]})  # token arrays
    encoded = encode_vector([1.0, -0.5, 2.25], "base64")
    assert isinstance(encoded, str)
    assert list(struct.unpack("<3f", base64.b64decode(encoded))) == [1.0, -0.5, 2.25]
    assert encode_vector([1.0], "float") == [1.0]


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_gateway_metrics_count_a_result() -> None:
    m = GatewayMetrics()
    verdicts = [SandboxRunSummary(name="t", status="ok"), SandboxRunSummary(name="u", status="runtime_error")]
    res = result("done", usage=Usage(input_tokens=10, output_tokens=20, seconds=2.0, ttft_s=0.3),
                 attempts=[Attempt(n=1, code="", verdicts=verdicts)])
    m.observe_result(res, "coder", seconds=2.5)
    got = samples(generate_latest(m.registry).decode())
    assert got[("syndicate_gateway_tasks_total", (("kind", "code"), ("status", "done")))] == 1
    assert got[("syndicate_gateway_tokens_total", (("agent", "coder"), ("direction", "out")))] == 20
    assert got[("syndicate_gateway_tokens_per_second_sum", (("agent", "coder"),))] == 10.0
    assert got[("syndicate_gateway_sandbox_runs_total", (("verdict", "runtime_error"),))] == 1
    assert got[("syndicate_gateway_engine_time_to_first_token_seconds_count", (("agent", "coder"),))] == 1


def test_service_expositions_merge_with_origin_labels() -> None:
    replies = []
    for i, verdict in enumerate(("ok", "timeout")):
        sm = ServiceMetrics()
        sm.observe_sandbox(verdict)
        sm.observe_generation(5, 10, 1.0, 0.2)
        replies.append(MetricsReply(service="code-sandbox", instance=f"sb{i}", exposition=sm.exposition()))
    fams = {f.name: f for f in merge_expositions(replies)}
    runs = fams["syndicate_sandbox_runs"]
    labels = sorted((s.labels["instance"], s.labels["verdict"]) for s in runs.samples)
    assert labels == [("sb0", "ok"), ("sb1", "timeout")]
    assert not any(name.endswith("_created") for name in fams)
    assert all(s.labels["service"] == "code-sandbox" for f in fams.values() for s in f.samples)
