"""The gateway against a real nats-server and the real router, with the official
``openai`` client and raw httpx SSE."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.telemetry import read_trace
from syndicate.cli.connect import health_replies
from tests.conftest import wait_until
from tests.gateway.conftest import Stack
from tests.gateway.fake_agent import ANSWER

pytestmark = pytest.mark.integration


def client(stack: Stack, small: bool = False, **kwargs) -> openai.OpenAI:
    gw = stack.small if small else stack.main
    return openai.OpenAI(base_url=gw.base, api_key="unused", max_retries=0, **kwargs)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}, parsed by prometheus_client."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_model_list(stack: Stack) -> None:
    # The agents, then the models they hold (the fake agents' health replies say "fake"; a
    # reply that misses one ping's window is in a later one: the list refreshes behind).
    want = ["syndicate", "coder", "reasoner", "fake"]
    models = wait_until(lambda: (found := client(stack).models.list().data) and [m.id for m in found] == want and found,
                        lambda: f"models: {[m.id for m in client(stack).models.list().data]}")
    assert models[-1].model_dump()["served_by"] == ["coder-agent", "reasoner-agent"]


def test_non_streaming_chat_runs_a_task(stack: Stack) -> None:
    reply = client(stack).chat.completions.create(
        model="reasoner", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}],
    )
    assert reply.choices[0].message.content == ANSWER.format(agent="reasoner")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 7 and reply.usage.completion_tokens > 0
    task_id = reply.model_extra["syndicate"]["task_id"]
    state = stack.task_state(task_id)
    assert state is not None and state.status == "done" and state.route == ["reasoner"]
    assert state.task.kind == "reason" and state.task.text.startswith("Who are you?")
    assert "[system] Be brief." in state.task.text


def test_streaming_chat_with_the_openai_client(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="coder", messages=[{"role": "user", "content": "Write hello()."}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER.format(agent="coder")
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1  # tokens arrived one by one, not as one block
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_raw_sse_ends_with_done_and_text_completions_stream(stack: Stack) -> None:
    body = {"model": "reasoner", "prompt": "Say hello", "stream": True}
    with httpx.stream("POST", f"{stack.main.base}/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == ANSWER.format(agent="reasoner")


def test_non_streaming_text_completion(stack: Stack) -> None:
    reply = client(stack).completions.create(model="syndicate", prompt="What is a fake agent?")
    assert reply.choices[0].text == ANSWER.format(agent="reasoner")  # auto-routed: a question


def test_invalid_request_is_400_with_an_error_object(stack: Stack) -> None:
    r = httpx.post(f"{stack.main.base}/chat/completions", json={"model": "coder", "messages": []}, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "messages" and "messages" in err["message"]
    with pytest.raises(openai.BadRequestError):
        client(stack).chat.completions.create(model="coder", messages=[{"role": "user", "content": "x"}], n=2)
    with pytest.raises(openai.NotFoundError):
        client(stack).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_full_gateway_is_429_and_deadline_is_504(stack: Stack) -> None:
    """The small gateway has one slot and a 3 s deadline: of two hanging requests sent at
    once, one holds the slot (then ends 504) and the other is refused with 429 +
    Retry-After. Sent together, the second arrives while the first holds the slot however
    busy the machine is (sent one after the other, it raced the deadline)."""
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "HANG please"}]}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as http:
            return list(await asyncio.gather(*(http.post(f"{stack.small.base}/chat/completions", json=body)
                                               for _ in range(2))))

    refused, held = sorted(asyncio.run(both()), key=lambda r: r.status_code)
    assert (refused.status_code, held.status_code) == (429, 504), (refused.text, held.text)
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert held.json()["error"]["code"] == "timeout"


def test_agent_queue_full_maps_to_429(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client(stack).chat.completions.create(model="coder", messages=[{"role": "user", "content": "QUEUEFULL now"}])
    assert info.value.response.headers.get("retry-after")
    assert info.value.code == "queue_full"


def test_streaming_client_disconnect_cancels_the_task(stack: Stack) -> None:
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "SLOW story"}], "stream": True}
    with httpx.stream("POST", f"{stack.main.base}/chat/completions", json=body, timeout=30) as r:
        task_id = r.headers["x-syndicate-task-id"]
        for line in r.iter_lines():
            if '"t2 "' in line:
                break  # a few tokens in: hang up
    state = stack.wait_status(task_id, {"cancelled", "done", "failed", "timeout"})
    assert state is not None and state.status == "cancelled", state
    assert task_id in stack.agents.cancels  # the CancelRequest reached the agent


def test_non_streaming_client_disconnect_cancels_the_task(stack: Stack) -> None:
    before = set(stack.agents.cancels)
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "SLOW essay"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.main.base}/chat/completions", json=body, timeout=httpx.Timeout(30, read=1.0))
    wait_until(lambda: stack.agents.cancels - before, "the agent got no cancel")
    new = stack.agents.cancels - before
    assert len(new) == 1
    state = stack.wait_status(new.pop(), {"cancelled", "done", "failed", "timeout"})
    assert state is not None and state.status == "cancelled"


def test_traceparent_joins_the_task_trace(stack: Stack) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.post(
        f"{stack.main.base}/chat/completions", timeout=30,
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        json={"model": "coder", "messages": [{"role": "user", "content": "Write f()."}]},
    )
    assert r.status_code == 200
    assert r.json()["syndicate"]["trace_id"] == trace_id
    state = stack.task_state(r.headers["x-syndicate-task-id"])
    assert state is not None and state.trace_id == trace_id
    # The router's span is parented by the gateway's publish span, across processes
    # (spans are exported in batches: wait until both processes' spans are in).
    def joined() -> bool:
        spans = read_trace(stack.services.state_dir / "traces", trace_id)
        by_id = {s["span_id"]: s for s in spans}
        crossing = [s for s in spans if s["service"] == "router" and s["parent_id"] in by_id
                    and by_id[s["parent_id"]]["service"] == "gateway"]
        return bool(crossing) and any(s["name"] == "gateway task chat" for s in spans)

    wait_until(joined, lambda: f"no router span under the gateway's: {read_trace(stack.services.state_dir / 'traces', trace_id)}")


def test_embeddings_without_and_with_a_retriever(stack: Stack) -> None:
    r = httpx.post(f"{stack.main.base}/embeddings", json={"model": "any", "input": "hi"}, timeout=30)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "retriever_unavailable"
    stack.agents.enable_embedder()
    try:
        out = client(stack).embeddings.create(model="any", input=["ab", "abcd"])  # SDK asks base64
        assert [d.embedding for d in out.data] == [[2.0, 0.5, -1.0], [4.0, 0.5, -1.0]]
        assert out.model == "fake-embed"
        floats = httpx.post(f"{stack.main.base}/embeddings", timeout=30,
                            json={"model": "any", "input": "abc", "encoding_format": "float"}).json()
        assert floats["data"][0]["embedding"] == [3.0, 0.5, -1.0]
    finally:
        stack.agents.disable_embedder()


def test_metrics_parse_and_move_after_a_task(stack: Stack) -> None:
    before = scrape(stack.main.url)
    client(stack).chat.completions.create(model="coder", messages=[{"role": "user", "content": "Write g()."}])

    def with_pings() -> dict:  # the series from health and metrics pings: a late reply comes with a later scrape
        page = scrape(stack.main.url)
        return page if value(page, "syndicate_service_up", service="router") == 1 and value(
            page, "syndicate_queue_depth", service="coder-agent") == 2 and value(
            page, "syndicate_sandbox_runs_total", service="coder-agent", verdict="ok") == 1 else {}

    after = wait_until(with_pings, "no scrape with the services' pings")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("syndicate_gateway_tasks_total", kind="code", status="done") == 1
    assert moved("syndicate_gateway_tokens_total", agent="coder", direction="in") == 7
    assert moved("syndicate_gateway_tokens_total", agent="coder", direction="out") > 0
    assert moved("syndicate_gateway_time_to_first_token_seconds_count", model="coder") == 1
    assert moved("syndicate_gateway_tokens_per_second_count", agent="coder") == 1
    assert moved("syndicate_gateway_sandbox_runs_total", verdict="ok") == 1
    assert moved("syndicate_gateway_requests_total", endpoint="/v1/chat/completions", code="200") == 1
    # From health pings: the router (real) and the fake agents' queue depth.
    assert value(after, "syndicate_service_up", service="router") == 1
    assert value(after, "syndicate_queue_depth", service="coder-agent") == 2
    assert value(after, "syndicate_running_requests", service="reasoner-agent") == 1
    # A service's own series (METRICS_PING), re-labelled with its origin.
    assert value(after, "syndicate_sandbox_runs_total", service="coder-agent", verdict="ok") == 1
    assert value(after, "syndicate_retrieval_seconds_count", service="coder-agent", op="search") == 1


def test_health_reply_carries_the_url(stack: Stack) -> None:
    both = {stack.main.url, stack.small.url}  # a reply that misses one ping's window comes with a later one

    def urls() -> set[str]:
        replies = asyncio.run(health_replies(stack.nats_url, wait_s=0.5))
        return {r.details.get("url") for r in replies if r.service == "gateway"}

    wait_until(lambda: urls() == both, lambda: f"gateways answering with their urls: {urls()}")

    def status_urls() -> set[str]:
        out = stack.services.cli("status", "--json")
        return {r["details"].get("url") for r in json.loads(out.stdout)["services"] if r["service"] == "gateway"}

    wait_until(lambda: status_urls() == both, lambda: f"syndicate status shows: {status_urls()}")
