"""reasoner-agent's self-consistency with scripted models: which questions are voted on,
how a chain's final answer is read, the vote, early stop, a full queue, and cancel."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reasoner_agent.answerer import Answerer
from services.reasoner_agent.chains import run_chains
from services.reasoner_agent.settings import ReasonerSettings
from services.reasoner_agent.voting import decided, final_answer, question_kind, tally
from shared.agent import MeteredEngine
from shared.contracts import AgentJob, SearchReply, SearchRequest
from shared.errors import QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, ScriptedEngine
from tests.conftest import until

WORD_PROBLEM = "Janet has 16 eggs and eats 3. How many eggs are left?"


async def no_search(req: SearchRequest) -> SearchReply:
    raise AssertionError("no collection, no search")


def job(text: str = WORD_PROBLEM, task_id: str = "t-9") -> AgentJob:
    return AgentJob(task_id=task_id, step_id=f"{task_id}.1", agent="reasoner", text=text, deadline=time.time() + 60)


class _Metrics:
    def observe_generation(self, *args: object) -> None:
        return None


@pytest.mark.parametrize(("question", "kind"), [
    (WORD_PROBLEM, "number"),
    ("A shirt costs $20 after a 20% discount. What was the original price?", "number"),
    ("Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Helium", "choice"),
    ("What is an automated market maker?", None),
    ("What is new in Python 3.12?", None),  # digits, but not a quantity question
    ("Write a haiku about the sea.", None),
])
def test_only_questions_with_a_checkable_answer_are_voted_on(question: str, kind: str | None) -> None:
    assert question_kind(question) == kind


@pytest.mark.parametrize(("text", "want"), [
    ("16 - 3 = 13 eggs. The answer is 13.", "13"),
    ("So she makes $18 a day.\nThe answer is $1,018.00.", "1018"),
    ("The answer is \\(\\boxed{3}\\).", "3"),
    ("Thus the total is \\boxed{42} and 7 more were extra", "42"),
    ("first 5, then 7, finally 9", "9"),
    ("no numbers at all", None),
])
def test_the_final_number_of_a_chain(text: str, want: str | None) -> None:
    assert final_answer(text, "number") == want


def test_the_chosen_option_of_a_chain() -> None:
    assert final_answer("B looks tempting, but the answer is C.", "choice", "ABCD") == "C"
    assert final_answer("Carbon dioxide is absorbed. (B)", "choice", "ABC") == "B"
    assert final_answer("the answer is a matter of taste", "choice", "ABCD") is None  # an article, not option A
    assert final_answer("The answer is E.", "choice", "ABCD") is None  # not one of the options


def test_majority_wins_and_a_tie_goes_to_the_greedy_chain() -> None:
    assert tally(["13", "12", "13", None, "12"]).answer == "13"
    tie = tally(["12", "13", "13", "12"], prefer=0)
    assert (tie.answer, tie.votes, tie.winner) == ("12", 2, 0)
    assert tally([None, None]).answer is None
    assert tally(["5", "5", None]).sentence == "2 of 3 reasoning chains agree on 5."


@given(st.lists(st.sampled_from(["1", "2", "3", None]), max_size=8), st.integers(0, 6))
def test_an_early_stop_never_changes_the_winner(done: list[str | None], remaining: int) -> None:
    """Whatever the chains still running answer, a decided vote keeps its leader."""
    if not decided(done, remaining):
        return
    leader = tally(done).answer
    for late in ("1", "2", "3", None):
        assert tally(done + [late] * remaining).answer == leader


@given(st.lists(st.sampled_from(["1", "2", "3", None]), min_size=1, max_size=8), st.integers(0, 6))
def test_a_tie_the_greedy_chain_would_win_is_decided_too(done: list[str | None], remaining: int) -> None:
    """done[0] is the greedy chain's answer: ties go to it, so it may lead by a tie's margin."""
    if not decided(done, remaining, done[0]):
        return
    leader = tally(done, prefer=0).answer
    for late in ("1", "2", "3", "4", None):
        assert tally(done + [late] * remaining, prefer=0).answer == leader
    assert decided(["7", "7", "8"], 1, "7") and not decided(["7", "7", "8"], 1) and not decided(["7", "8", "8"], 1, "7")


async def test_chains_run_in_parallel_greedy_first_then_seeded_samples() -> None:
    engine = ScriptedEngine(["The answer is 13.", "The answer is 12.", "The answer is 13.", "The answer is 13.",
                             "The answer is 13."])
    base = GenerationRequest(messages=[{"role": "user", "content": WORD_PROBLEM}], request_id="t-1")
    out = await run_chains(engine, base, n=5, kind="number", letters="", temperature=0.7, seed=100, early_stop=False)
    assert (out.vote.answer, out.vote.votes, out.vote.chains) == ("13", 4, 5)
    temps = [(r.temperature, r.seed, r.request_id) for r in engine.requests]
    assert temps[0] == (0.0, None, "t-1.c0")
    assert temps[1:] == [(0.7, 100 + i, f"t-1.c{i}") for i in range(1, 5)]


async def test_the_vote_overrules_a_wrong_greedy_chain_and_says_how_many_agree() -> None:
    engine = ScriptedEngine(["16 + 3 = 19. The answer is 19.", "16 - 3 = 13. The answer is 13.",
                             "The answer is 13.", "So 13 are left. The answer is 13.", "The answer is 19."])
    result = await Answerer(engine, no_search, ReasonerSettings(vote_early_stop=False)).answer(job())
    assert result.status == "done"
    assert result.answer.startswith("16 - 3 = 13. The answer is 13.")
    assert result.answer.endswith("3 of 5 reasoning chains agree on 13.")
    assert result.usage.output_tokens == sum(len(r) // 4 + (len(r) % 4 > 0) for r in [
        "16 + 3 = 19. The answer is 19.", "16 - 3 = 13. The answer is 13.", "The answer is 13.",
        "So 13 are left. The answer is 13.", "The answer is 19."])


async def test_chains_that_cannot_change_the_winner_are_stopped() -> None:
    quick, slow = "The answer is 13.", "Let me think about this for a long while. " * 20 + "The answer is 12."
    engine = ScriptedEngine([quick, quick, quick, slow, slow], token_delay_s=0.001)
    base = GenerationRequest(messages=[{"role": "user", "content": WORD_PROBLEM}], request_id="t-2")
    out = await run_chains(engine, base, n=5, kind="number", letters="", temperature=0.7, seed=1)
    assert (out.vote.answer, out.vote.votes, out.stopped_early) == ("13", 3, 2)
    assert engine.stats()["running"] == 0  # the stopped chains are really gone


class _FullAfter(ScriptedEngine):
    """Refuses every request past the first ``n`` (a busy engine's QueueFull)."""

    def __init__(self, replies: list[str], n: int) -> None:
        super().__init__(replies)
        self.n, self.seen = n, 0

    async def generate(self, request: GenerationRequest, on_token=None) -> GenerationResult:  # type: ignore[no-untyped-def]
        self.seen += 1
        if self.seen > self.n:
            raise QueueFull("full")
        return await super().generate(request, on_token)


async def test_a_full_queue_shrinks_the_vote_but_loses_nothing() -> None:
    engine = _FullAfter(["The answer is 7.", "The answer is 7.", "The answer is 8."], n=3)
    base = GenerationRequest(messages=[{"role": "user", "content": WORD_PROBLEM}], request_id="t-3")
    out = await run_chains(engine, base, n=5, kind="number", letters="", temperature=0.7, seed=1, early_stop=False)
    assert (out.vote.answer, out.vote.chains, out.dropped) == ("7", 3, 2)


async def test_a_refused_greedy_chain_fails_the_step_with_a_clear_error() -> None:
    engine = _FullAfter(["The answer is 7."], n=0)
    result = await Answerer(engine, no_search, ReasonerSettings()).answer(job())
    assert result.status == "failed" and result.error is not None and result.error.code == QueueFull.code


async def test_cancelling_the_task_stops_every_chain() -> None:
    engine = MeteredEngine(ScriptedEngine(["thinking " * 400 + "The answer is 1."], token_delay_s=0.002),
                           _Metrics())  # type: ignore[arg-type]
    task = asyncio.create_task(Answerer(engine, no_search, ReasonerSettings()).answer(job(task_id="t-4")))
    await until(lambda: engine.stats()["running"], "no chain started")  # a cancel reaches live chains
    assert engine.cancel("t-4")
    result = await asyncio.wait_for(task, 120)
    assert result.status == "cancelled"
    assert engine.stats()["running"] == 0


async def test_free_form_questions_are_answered_once_and_streamed() -> None:
    streamed: list[str] = []

    async def sink(piece: str) -> None:
        streamed.append(piece)

    engine = ScriptedEngine(["An AMM prices trades with a formula."])
    result = await Answerer(engine, no_search, ReasonerSettings(), on_token=sink).answer(job("What is an AMM?"))
    assert len(engine.requests) == 1 and engine.requests[0].temperature == 0.0
    assert "".join(streamed) == result.answer == "An AMM prices trades with a formula."


async def test_voting_can_be_turned_off() -> None:
    engine = ScriptedEngine(["The answer is 13."])
    result = await Answerer(engine, no_search, ReasonerSettings(vote_chains=1)).answer(job())
    assert len(engine.requests) == 1 and result.answer == "The answer is 13."
