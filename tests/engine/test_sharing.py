"""One prefill for many sequences of one prompt, and a prefix cache across slots, on a tiny
real llama.cpp model: samples of one prompt evaluate it once (the engine's counter says so)
and give the texts they give alone; a request waits for a prefix another is evaluating;
cancelling that one leaves the waiters whole; a busy slot's prefix is copied to a new one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from types import SimpleNamespace
from typing import Any

import pytest

from shared.errors import Cancelled
from shared.llm.base import GenerationRequest, GenerationResult
from shared.llm.slots import Slot, common_prefix, place, usable

SYSTEM = {"role": "system", "content": "You are a careful assistant who answers in short sentences. " * 4}


def req(text: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(messages=[SYSTEM, {"role": "user", "content": text}], **kw)


async def alone(eng: Any, r: GenerationRequest) -> GenerationResult:
    eng._reset_cache()
    out = await eng.generate(r)
    eng._reset_cache()
    return out


@contextlib.asynccontextmanager
async def one_admission(eng: Any) -> AsyncIterator[None]:
    """Requests started inside reach the worker together, in one admission round (it waits
    on the lock its inbox shares; the event loop thread may take it again)."""
    with eng._worker._wake:
        yield
        for _ in range(5):
            await asyncio.sleep(0)


def counters(eng: Any) -> dict[str, int]:
    s = eng.stats()
    return {k: s[k] for k in ("prompt_tokens_evaluated", "prompt_tokens_reused", "prompt_tokens_copied", "kv_copies")}


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
async def test_samples_of_one_prompt_evaluate_it_once(make_engine, exact: bool) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=4, queue_limit=4, exact_batching=exact)
    samples = [req("Write a poem.", max_tokens=60)] + [
        req("Write a poem.", max_tokens=60, temperature=0.9, seed=s) for s in (1, 2, 3)]
    expected = [(await alone(eng, r)).text for r in samples]
    n_prompt = len(eng._prompt_tokens(samples[0]))
    before = counters(eng)
    async with one_admission(eng):
        tasks = [asyncio.create_task(eng.generate(r)) for r in samples]
    results = await asyncio.gather(*tasks)
    assert [r.text for r in results] == expected  # greedy and seeded samples as alone
    after = counters(eng)
    assert after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"] == n_prompt
    assert after["kv_copies"] - before["kv_copies"] == 3
    assert after["prompt_tokens_copied"] - before["prompt_tokens_copied"] == 3 * n_prompt
    assert eng.stats()["running"] == 0


async def test_a_late_sample_of_a_cached_prompt_evaluates_nothing(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=2)
    first, second = req("Tell me a story.", max_tokens=200), req("Tell me a story.", max_tokens=30, temperature=0.7, seed=5)
    expected = (await alone(eng, second)).text
    late: list[Awaitable[GenerationResult]] = []

    async def on_token(p: str) -> None:
        if not late:
            late.append(asyncio.ensure_future(eng.generate(second)))

    before = counters(eng)["prompt_tokens_evaluated"]
    await eng.generate(first, on_token)
    assert (await late[0]).text == expected
    assert counters(eng)["prompt_tokens_evaluated"] - before == len(eng._prompt_tokens(first))


async def test_cancelling_the_owner_of_a_shared_prefix_leaves_the_waiters_whole(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=3, n_batch=32, queue_limit=3)
    long = "Summarise this: " + "the quick brown fox jumps over the lazy dog. " * 8
    owner = req(long, max_tokens=20, request_id="owner")
    waiters = [req(long, max_tokens=25), req(long + " Briefly.", max_tokens=25)]
    expected = [(await alone(eng, r)).text for r in waiters]
    worker, calls = eng._worker, 0
    original = worker._call

    def call(*args: Any, **kw: Any) -> None:
        nonlocal calls
        original(*args, **kw)
        calls += 1
        if calls == 2:  # the owner has evaluated 64 of its prompt tokens; the others wait for it
            assert len(worker.waiting) == 2
            eng.cancel("owner")

    worker._call = call
    before = counters(eng)
    async with one_admission(eng):
        tasks = [asyncio.create_task(eng.generate(r)) for r in [owner, *waiters]]
    with pytest.raises(Cancelled):
        await tasks[0]
    assert [(await t).text for t in tasks[1:]] == expected
    after = counters(eng)
    assert after["kv_copies"] - before["kv_copies"] == 2  # what the owner had evaluated
    assert after["prompt_tokens_copied"] - before["prompt_tokens_copied"] == 2 * 64


async def test_a_busy_slots_prefix_is_copied_to_a_new_request(make_engine) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(slots=2)
    running = req("Go on and on.", max_tokens=3000, request_id="long")
    other = req("Something else.", max_tokens=30)
    expected = (await alone(eng, other)).text
    joined: list[Awaitable[GenerationResult]] = []
    started = asyncio.Event()

    async def on_token(p: str) -> None:
        if not joined:
            joined.append(asyncio.ensure_future(eng.generate(other)))
            started.set()

    before = counters(eng)
    task = asyncio.create_task(eng.generate(running, on_token))
    await started.wait()
    assert (await joined[0]).text == expected
    eng.cancel("long")
    with pytest.raises(Cancelled):
        await task
    after = counters(eng)
    assert after["kv_copies"] - before["kv_copies"] == 1
    # the system prompt and the template up to the user's words
    assert after["prompt_tokens_copied"] - before["prompt_tokens_copied"] == common_prefix(
        eng._prompt_tokens(running), eng._prompt_tokens(other))


def test_placement_prefers_the_longest_prefix_and_copies_only_when_it_pays() -> None:
    prompt = list(range(100))
    own = Slot(0, kv=list(range(30)), last_used=2.0)
    busy = Slot(1, kv=[*range(100), 7, 7], busy=True, prompt_end=100)
    spare = Slot(2, kv=[9] * 50, last_used=1.0)
    owners: dict[Any, Any] = {busy: SimpleNamespace(pending=[])}  # decoding
    p = place([own, busy, spare], owners, prompt, min_eval=8, min_copy=16, exact=False)
    assert p is not None and (p.source, p.slot, p.share) == (busy, spare, 92)  # copied into the LRU slot
    p = place([own, busy, spare], owners, prompt, min_eval=8, min_copy=80, exact=False)
    assert p is not None and (p.source, p.slot, p.share) == (None, own, 30)  # a copy that saves too little
    busy.logits, busy.logits_at = [0.0], 100
    assert usable(busy, prompt, 8, exact=False) == 100  # whole prompt and its logits: nothing to evaluate
    generated = Slot(3, kv=list(range(100)), prompt_end=40)
    assert usable(generated, prompt, 8, exact=True) == 40  # exact batching reuses prompt rows only
    assert usable(generated, prompt, 8, exact=False) == 92
    spare.busy = own.busy = True
    assert place([own, busy, spare], owners, prompt, min_eval=8, min_copy=16, exact=False) is None
