"""LlamaEngine on a tiny real llama.cpp model: streaming, schema, stops, queue, deadline,
cancel, speculation, spans."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shared.errors import Cancelled, DeadlineExceeded, EngineError, QueueFull
from shared.llm.base import GenerationRequest, TextEngine

MSG = [{"role": "user", "content": "Tell me something."}]


def req(**kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    return GenerationRequest(messages=kw.pop("messages", MSG), **kw)


async def test_is_a_text_engine_and_streams_everything(engine) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(engine, TextEngine)
    pieces: list[str] = []

    async def on_token(p: str) -> None:
        pieces.append(p)

    r = await engine.generate(req(max_tokens=40), on_token)
    assert r.output_tokens == 40
    assert r.finish_reason == "length"
    assert "".join(pieces) == r.text
    assert len(pieces) > 1
    assert r.input_tokens > 5
    assert r.ttft_s is not None and r.ttft_s <= r.seconds
    assert r.spec_acceptance is None  # speculation is off by default


async def test_greedy_is_deterministic_with_prefix_cache(engine) -> None:  # type: ignore[no-untyped-def]
    a = await engine.generate(req(max_tokens=30))
    b = await engine.generate(req(max_tokens=30))  # prompt now cached
    engine._reset_cache()
    c = await engine.generate(req(max_tokens=30))
    assert a.text == b.text == c.text


async def test_stop_string_cuts_text(engine) -> None:  # type: ignore[no-untyped-def]
    full = (await engine.generate(req(max_tokens=60))).text
    stop = full[20:23]
    cut = full.index(stop)
    pieces: list[str] = []

    async def on_token(p: str) -> None:
        pieces.append(p)

    r = await engine.generate(req(max_tokens=60, stop=[stop]), on_token)
    assert r.text == full[:cut]
    assert r.finish_reason == "stop"
    assert "".join(pieces) == r.text


async def test_json_schema_output_parses(engine) -> None:  # type: ignore[no-untyped-def]
    schema = {
        "type": "object",
        "properties": {"route": {"enum": ["code", "reason"]}, "confidence": {"type": "integer"}},
        "required": ["route", "confidence"],
    }
    r = await engine.generate(req(max_tokens=200, json_schema=schema))
    data = json.loads(r.text)
    assert data["route"] in ("code", "reason")
    assert isinstance(data["confidence"], int)


async def test_queue_full_at_limit(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(queue_limit=1)
    long = req(max_tokens=3000, request_id="a")
    running = asyncio.create_task(eng.generate(long))
    queued = asyncio.create_task(eng.generate(req(max_tokens=5, request_id="b")))
    rejected = asyncio.create_task(eng.generate(req(max_tokens=5, request_id="c")))
    with pytest.raises(QueueFull) as info:
        await rejected
    assert info.value.detail["queue_limit"] == 1
    assert eng.stats()["queue_depth"] == 1 and eng.stats()["running"] == 1
    eng.cancel("a")
    with pytest.raises(Cancelled):
        await running
    assert (await queued).output_tokens == 5  # the waiter got the model afterwards
    assert eng.stats()["rejected"] == 1


async def test_queue_limit_zero_allows_only_the_running_one(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(queue_limit=0)
    first = asyncio.create_task(eng.generate(req(max_tokens=3000, request_id="a")))
    second = asyncio.create_task(eng.generate(req(max_tokens=5)))
    with pytest.raises(QueueFull):
        await second
    eng.cancel("a")
    with pytest.raises(Cancelled):
        await first


async def test_deadline_while_queued(engine) -> None:  # type: ignore[no-untyped-def]
    running = asyncio.create_task(engine.generate(req(max_tokens=3000, request_id="long")))
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceeded, match="queue"):
        await engine.generate(req(max_tokens=5, deadline=time.time() + 0.05))
    assert engine.stats()["queue_depth"] == 0  # it left the queue
    engine.cancel("long")
    with pytest.raises(Cancelled):
        await running
    assert engine.stats()["timeouts"] == 1


async def test_past_deadline_is_refused_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeadlineExceeded):
        await engine.generate(req(deadline=time.time() - 1))


async def test_deadline_while_running_stops_generation(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeadlineExceeded) as info:
        await engine.generate(req(max_tokens=3900, deadline=time.time() + 0.2))
    assert info.value.detail["output_tokens"] < 3900
    r = await engine.generate(req(max_tokens=3))  # the model is free again
    assert r.output_tokens == 3


async def test_cancel_mid_generation_stops_within_a_step(engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    after_cancel: list[str] = []

    async def on_token(p: str) -> None:
        if engine.stats()["cancelled"] or len(seen) >= 5:
            after_cancel.append(p)
            return
        seen.append(p)
        if len(seen) == 5:
            assert engine.cancel("t-1")

    with pytest.raises(Cancelled) as info:
        await engine.generate(req(max_tokens=3900, request_id="t-1"), on_token)
    assert info.value.detail["tokens_after_cancel"] <= 1
    assert info.value.detail["output_tokens"] < 3900
    assert after_cancel == []  # nothing is streamed after the cancel
    assert engine.cancel("t-1") is False  # forgotten once finished


async def test_cancel_while_queued(engine) -> None:  # type: ignore[no-untyped-def]
    running = asyncio.create_task(engine.generate(req(max_tokens=3000, request_id="run")))
    waiting = asyncio.create_task(engine.generate(req(max_tokens=5, request_id="wait")))
    await asyncio.sleep(0)
    assert engine.stats()["queue_depth"] == 1
    assert engine.cancel("wait")
    with pytest.raises(Cancelled, match="queued"):
        await waiting
    engine.cancel("run")
    with pytest.raises(Cancelled):
        await running


async def test_cancelling_the_caller_frees_the_model(engine) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(engine.generate(req(max_tokens=3900)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = await asyncio.wait_for(engine.generate(req(max_tokens=4)), timeout=60)
    assert r.output_tokens == 4


async def test_failing_callback_stops_generation(engine) -> None:  # type: ignore[no-untyped-def]
    async def boom(p: str) -> None:
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        await engine.generate(req(max_tokens=3900), boom)
    r = await asyncio.wait_for(engine.generate(req(max_tokens=4)), timeout=60)
    assert r.output_tokens == 4


async def test_prompt_longer_than_context_is_an_engine_error(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(n_ctx=256)
    with pytest.raises(EngineError, match="does not fit"):
        await eng.generate(req(messages=[{"role": "user", "content": "x" * 400}]))


async def test_speculation_gives_identical_greedy_output(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(speculative="prompt-lookup", spec_num_pred_tokens=8)
    # Random-weight models fall into loops: prompt lookup finds their continuation.
    plain = await eng.generate(req(max_tokens=300, speculative=False))
    eng._reset_cache()
    pieces: list[str] = []

    async def on_token(p: str) -> None:
        pieces.append(p)

    spec = await eng.generate(req(max_tokens=300), on_token)
    assert spec.text == plain.text
    assert "".join(pieces) == spec.text
    assert spec.output_tokens == plain.output_tokens == 300
    assert spec.spec_acceptance is not None and spec.spec_acceptance > 0


async def test_speculation_with_schema_still_valid(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(speculative="prompt-lookup")
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 30}}, "required": ["a"]}
    r = await eng.generate(req(max_tokens=200, json_schema=schema, messages=[{"role": "user", "content": '{"a": "aaaa"} {"a": "aaaa"}'}]))
    assert isinstance(json.loads(r.text)["a"], str)


async def test_generation_is_a_genai_span(engine) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        pytest.skip("another non-SDK tracer provider is installed")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    r = await engine.generate(req(max_tokens=12))
    spans = [s for s in exporter.get_finished_spans() if s.name == "chat tiny"]
    assert spans, [s.name for s in exporter.get_finished_spans()]
    a = spans[-1].attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "tiny"
    assert a["gen_ai.usage.input_tokens"] == r.input_tokens
    assert a["gen_ai.usage.output_tokens"] == 12
    assert a["syndicate.llm.ttft_s"] >= 0
    assert "syndicate.llm.tokens_per_s" in a
    exporter.clear()
    with pytest.raises(DeadlineExceeded):
        await engine.generate(req(deadline=time.time() - 1))


def test_stats_report_placement(make_engine) -> None:  # type: ignore[no-untyped-def]
    import os

    eng = make_engine(queue_limit=3)
    s = eng.stats()
    assert s["cpus"] == sorted(os.sched_getaffinity(0))
    assert s["threads"] == len(s["cpus"])
    assert (s["queue_depth"], s["running"], s["queue_limit"], s["model"]) == (0, 0, 3, "tiny")


async def test_exact_resync_path_keeps_greedy_output(make_engine) -> None:  # type: ignore[no-untyped-def]
    # A margin no choice can meet: every decision after a verify batch recomputes the
    # batch-made cache entries one by one. Output must still equal plain decoding.
    eng = make_engine(speculative="prompt-lookup", spec_num_pred_tokens=6, spec_exact_margin=1e9,
                      spec_adaptive=False)
    plain = await eng.generate(req(max_tokens=120, speculative=False))
    eng._reset_cache()
    spec = await eng.generate(req(max_tokens=120))
    assert spec.text == plain.text
    assert eng.stats()["last_spec_resyncs"] > 0


async def test_greedy_argmax_equals_the_bindings_greedy_sampler(engine, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """The engine picks greedy tokens by argmax without a sampler chain: the same text as
    plain llama-cpp-python at temperature 0 on the same model."""
    from shared.llm.llama import import_llama_cpp

    ours = (await engine.generate(req(max_tokens=48))).text
    llm = import_llama_cpp().Llama(str(tiny_model), n_ctx=512, verbose=False)
    try:
        theirs = llm.create_chat_completion(MSG, max_tokens=48, temperature=0.0)["choices"][0]["message"]["content"]
    finally:
        llm.close()
    # Random byte tokens are not UTF-8: the binding drops invalid bytes, the engine shows U+FFFD.
    assert ours.replace("\ufffd", "") == theirs
