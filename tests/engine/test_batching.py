"""Continuous batching on a tiny real llama.cpp model: several requests decoded together
give the same temperature-0 text as one at a time, each keeps its own settings, cancel and
deadline, the queue limit counts slots, joining requests are chunked, roster/agents wiring."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shared.errors import Cancelled, DeadlineExceeded, QueueFull
from shared.llm.base import GenerationRequest

SCHEMA = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 20}}, "required": ["a"]}


def req(text: str, **kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    return GenerationRequest(messages=[{"role": "user", "content": text}], **kw)


def mixed_requests() -> list[GenerationRequest]:
    """Different prompts, lengths, stops, a schema: they join and leave at different steps."""
    return [
        req("Tell me something.", max_tokens=150),
        req("Write a poem about the sea and the wind.", max_tokens=60),
        req("x" * 300, max_tokens=200),  # a longer prompt: prefilled in chunks
        req("Answer in JSON.", max_tokens=120, json_schema=SCHEMA),
        req("Something else entirely, please.", max_tokens=90),
        req("Stop early.", max_tokens=200, stop=["ab"]),
    ]


async def run_one_at_a_time(eng, requests: list[GenerationRequest]) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for r in requests:
        eng._reset_cache()
        out.append((await eng.generate(r)).text)
    return out


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fast"])
async def test_batched_greedy_output_equals_one_at_a_time(make_engine, exact: bool) -> None:  # type: ignore[no-untyped-def]
    # Exact batching guarantees it for any model; the fast path for this F16 model only.
    requests = mixed_requests()
    single = make_engine(slots=1)
    expected = await run_one_at_a_time(single, requests)
    single.close()
    eng = make_engine(slots=4, queue_limit=4, prefill_chunk=32, exact_batching=exact)
    assert await run_one_at_a_time(eng, requests) == expected  # same engine, sequential
    eng._reset_cache()
    streamed: dict[int, list[str]] = {i: [] for i in range(len(requests))}

    def sink(i: int):  # type: ignore[no-untyped-def]
        async def on_token(p: str) -> None:
            streamed[i].append(p)
        return on_token

    results = await asyncio.gather(*(eng.generate(r, sink(i)) for i, r in enumerate(requests)))
    assert [r.text for r in results] == expected
    assert ["".join(streamed[i]) for i in range(len(requests))] == expected
    assert set(json.loads(results[3].text, strict=False)) == {"a"}  # the schema held in a batch (byte tokens may be raw control chars)
    assert "ab" not in results[5].text
    s = eng.stats()
    assert s["max_seqs_per_step"] == 4  # really decoded together
    assert s["seq_steps"] > s["decode_steps"]
    assert s["running"] == 0 and s["queue_depth"] == 0 and s["served"] == 2 * len(requests)


async def test_sampling_neighbours_do_not_change_greedy_output(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=3)
    greedy = req("Tell me something.", max_tokens=120)
    alone = (await eng.generate(greedy)).text
    eng._reset_cache()
    hot = [req("Tell me something.", max_tokens=150, temperature=1.2), req("Another one", max_tokens=150, temperature=0.8)]
    together = await asyncio.gather(eng.generate(greedy), *(eng.generate(r) for r in hot))
    assert together[0].text == alone
    assert all(r.output_tokens > 0 for r in together[1:])


async def test_speculation_alone_and_batching_agree(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=4, speculative="prompt-lookup", spec_num_pred_tokens=8)
    a, b = req("Tell me something.", max_tokens=250), req("And another thing.", max_tokens=60)
    plain = [(await eng.generate(r.model_copy(update={"speculative": False}))).text for r in (a, b)]
    eng._reset_cache()
    spec_alone = await eng.generate(a)
    assert spec_alone.text == plain[0]
    assert spec_alone.spec_acceptance is not None  # it drafted while alone
    eng._reset_cache()
    together = await asyncio.gather(eng.generate(a), eng.generate(b))
    assert [r.text for r in together] == plain


async def test_cancel_and_deadline_of_one_sequence_leave_the_others_running(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=3, n_ctx=4096)
    survivor = req("Tell me something.", max_tokens=500)
    expected = (await eng.generate(survivor)).text
    eng._reset_cache()
    seen = 0

    async def cancel_after_five(p: str) -> None:
        nonlocal seen
        seen += 1
        if seen == 5:
            assert eng.cancel("victim")

    keep = asyncio.create_task(eng.generate(survivor))
    victim = asyncio.create_task(eng.generate(req("Go on forever.", max_tokens=3900, request_id="victim"), cancel_after_five))
    late = asyncio.create_task(eng.generate(req("Go on and on.", max_tokens=3900, deadline=time.time() + 0.3)))
    with pytest.raises(Cancelled) as cancelled:
        await victim
    assert cancelled.value.detail["tokens_after_cancel"] <= 1
    with pytest.raises(DeadlineExceeded) as timed_out:
        await late
    assert timed_out.value.detail["output_tokens"] < 3900
    result = await keep
    assert result.text == expected
    assert result.finish_reason == "length"
    s = eng.stats()
    assert (s["cancelled"], s["timeouts"], s["running"]) == (1, 1, 0)


async def test_queue_full_counts_slots_plus_queue(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=2, queue_limit=1)
    running = [asyncio.create_task(eng.generate(req("long", max_tokens=3900, request_id=f"r{i}"))) for i in range(2)]
    queued = asyncio.create_task(eng.generate(req("short", max_tokens=5, request_id="q")))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as info:
        await eng.generate(req("one too many", max_tokens=5))
    assert info.value.detail == {"queue_depth": 1, "queue_limit": 1, "running": 2, "slots": 2}
    s = eng.stats()
    assert (s["running"], s["queue_depth"], s["waiting"], s["slots"]) == (2, 1, 1, 2)
    eng.cancel("r0")
    assert (await queued).output_tokens == 5  # got r0's slot while r1 still runs
    eng.cancel("r1")
    for t in running:
        with pytest.raises(Cancelled):
            await t
    assert eng.stats()["rejected"] == 1


async def test_joining_request_is_chunked_and_long_ones_keep_generating(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=3, prefill_chunk=32)
    joiner = req("y" * 700, max_tokens=20)
    expected = (await eng.generate(joiner)).text
    eng._reset_cache()
    counts = {"a": 0, "b": 0}
    joined = asyncio.Event()
    during: dict[str, int] = {}

    def counter(name: str):  # type: ignore[no-untyped-def]
        async def on_token(p: str) -> None:
            counts[name] += 1
            if counts[name] == 10:
                joined.set()
        return on_token

    long_a = asyncio.create_task(eng.generate(req("Long one", max_tokens=3000, request_id="a"), counter("a")))
    long_b = asyncio.create_task(eng.generate(req("Long two", max_tokens=3000, request_id="b"), counter("b")))
    await joined.wait()
    before = dict(counts)
    first: list[float] = []

    async def joiner_token(p: str) -> None:
        if not first:
            first.append(1)
            during.update({k: counts[k] - before[k] for k in counts})

    r = await eng.generate(joiner, joiner_token)
    assert r.text == expected
    assert not long_a.done() and not long_b.done()  # it joined and left while they ran
    # ~720 prompt tokens in chunks of 32: ~22 steps, each also gave a and b a token.
    assert min(during.values()) >= 10, during
    eng.cancel("a")
    eng.cancel("b")
    for t in (long_a, long_b):
        with pytest.raises(Cancelled):
            await t


async def test_prefix_reuse_picks_the_slot_with_the_longest_common_prefix(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=2)
    system = {"role": "system", "content": "You are terse. " * 20}
    first = GenerationRequest(messages=[system, {"role": "user", "content": "one"}], max_tokens=8)
    other = req("unrelated", max_tokens=8)
    await asyncio.gather(eng.generate(first), eng.generate(other))
    slot = next(s for s in eng._slots if s.kv[:10] == eng._prompt_tokens(first)[:10])
    again = GenerationRequest(messages=[system, {"role": "user", "content": "two"}], max_tokens=8)
    r = await eng.generate(again)
    assert r.output_tokens == 8
    assert eng._prompt_tokens(again) == slot.kv[: len(eng._prompt_tokens(again))]  # same slot reused


def test_stats_show_slots_and_throughput(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=4, queue_limit=2, n_ctx=1024)
    s = eng.stats()
    assert (s["slots"], s["waiting"], s["running"], s["tokens_per_s"]) == (4, 0, 0, 0)
    assert s["n_ctx"] == 1024 and s["n_ctx_total"] == 4096  # n_ctx is per slot
    assert s["exact_batching"] is False  # the fast path is the default
    assert make_engine(slots=4, exact_batching=True).stats()["exact_batching"] is True
    assert make_engine(slots=1, exact_batching=True).stats()["exact_batching"] is False


async def test_tokens_per_s_counts_recent_output(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=2)
    eng._stats.window_s = 3600.0  # every token is recent, however busy the machine
    await asyncio.gather(eng.generate(req("a", max_tokens=40)), eng.generate(req("b", max_tokens=40)))
    s = eng.stats()
    assert s["tokens_out_total"] == 80
    assert s["tokens_per_s"] == pytest.approx(80 / 3600.0, abs=0.01)


def test_roster_enables_batching_for_agents() -> None:
    from shared.llm.llama import EngineConfig
    from shared.llm.roster import load_roster
    from shared.settings import REPO_ROOT

    roster = load_roster(REPO_ROOT / "infra" / "models.toml")
    for role in ("coder", "reasoner"):
        resolved = roster.role(role, env={})
        cfg = EngineConfig.from_role(resolved)
        assert cfg.slots > 1 and resolved.config.slots == cfg.slots
        assert cfg.prefill_chunk == resolved.config.prefill_chunk
    override = roster.role("coder", env={"SYNDICATE_MODEL_CODER_SLOTS": "1"})
    assert override.config.slots == 1


def test_health_and_metrics_show_engine_state() -> None:
    from shared.metrics import ServiceMetrics
    from shared.service import ServiceRuntime
    from shared.settings import Settings

    state = {"queue_depth": 3, "running": 4, "slots": 4, "tokens_per_s": 37.5}
    rt = ServiceRuntime("coder-agent", Settings(), stats=lambda: dict(state))
    h = rt.health()
    assert (h.queue_depth, h.running, h.details["slots"], h.details["tokens_per_s"]) == (3, 4, 4, 37.5)
    m = ServiceMetrics()
    m.watch_engine(lambda: dict(state))
    text = m.exposition()
    assert "syndicate_engine_waiting_requests 3.0" in text
    assert "syndicate_engine_running_requests 4.0" in text
    assert "syndicate_engine_slots 4.0" in text
    state["running"] = 1  # read at scrape time
    assert "syndicate_engine_running_requests 1.0" in m.exposition()


async def test_a_step_reaches_the_event_loop_in_one_hand_off(make_engine) -> None:  # type: ignore[no-untyped-def]
    """Pieces of all sequences of a step (and their results) wake the loop once, not once
    per token: each wake-up puts the loop thread on the cores the decode threads use."""
    eng = make_engine(slots=4)
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(eng.generate(req(f"Prompt {i}", max_tokens=40)) for i in range(4)))
    tokens = sum(r.output_tokens for r in results)
    assert tokens == 160
    assert 0 < eng._wakers[loop].wakeups <= eng.stats()["decode_steps"] + 1 < tokens

