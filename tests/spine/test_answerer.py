"""reasoner-agent: answers from retrieved sources, cites them, admits when nothing fits."""

from __future__ import annotations

import time

from services.reasoner_agent.answerer import Answerer, cited
from services.reasoner_agent.settings import ReasonerSettings
from shared.contracts import AgentJob, SearchHit, SearchReply, SearchRequest
from shared.llm.base import ScriptedEngine

HITS = [
    SearchHit(text="An AMM prices swaps with x*y=k.", path="defi/amm.md", start_line=3, end_line=9, score=0.8),
    SearchHit(text="Liquidations happen below the health factor 1.", path="defi/lending.md", start_line=10, end_line=20, score=0.6),
]


def job(collection: str | None = "defi") -> AgentJob:
    return AgentJob(task_id="t-2", step_id="t-2.1", agent="reasoner", text="How does an AMM price swaps?",
                    collection=collection, deadline=time.time() + 60)


async def test_answers_with_citations_of_retrieved_sources_only() -> None:
    asked: list[SearchRequest] = []

    async def search(req: SearchRequest) -> SearchReply:
        asked.append(req)
        return SearchReply(hits=HITS, collection=req.collection)

    engine = ScriptedEngine(["It prices swaps with the constant product x*y=k [defi/amm.md:3-9], not [made/up.md:1-2]."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job())
    assert result.status == "done"
    assert asked[0].collection == "defi"
    assert [(c.path, c.start_line, c.end_line) for c in result.citations] == [("defi/amm.md", 3, 9)]
    prompt = engine.requests[0].messages[-1]["content"]
    assert "Source 1 (defi/amm.md, lines 3-9)" in prompt and "x*y=k" in prompt


async def test_says_plainly_when_nothing_is_relevant() -> None:
    async def search(req: SearchRequest) -> SearchReply:
        return SearchReply(hits=[SearchHit(text="unrelated", path="a.md", start_line=1, end_line=2, score=0.01)], collection=req.collection)

    engine = ScriptedEngine(["should not be called"])
    result = await Answerer(engine, search, ReasonerSettings(min_score=0.25)).answer(job())
    assert "nothing relevant" in result.answer
    assert engine.requests == []
    assert result.citations == []


async def test_without_collection_answers_directly() -> None:
    async def search(req: SearchRequest) -> SearchReply:
        raise AssertionError("no search without a collection")

    engine = ScriptedEngine(["Paris."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job(collection=None))
    assert result.answer == "Paris."


def test_cited_deduplicates() -> None:
    text = "[defi/amm.md:3-9] and again [defi/amm.md:3-9] and [defi/lending.md:10-20]"
    assert [c.path for c in cited(text, HITS)] == ["defi/amm.md", "defi/lending.md"]


async def test_uncited_answers_are_attributed_to_the_passages_they_use() -> None:
    async def search(req: SearchRequest) -> SearchReply:
        return SearchReply(hits=HITS, collection=req.collection)

    engine = ScriptedEngine(["Liquidations happen when the health factor falls below 1. Bananas are yellow."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job())
    assert result.answer.startswith("Liquidations happen when the health factor falls below 1. [defi/lending.md:10-20]")
    assert result.answer.endswith("Bananas are yellow.")
    assert [c.path for c in result.citations] == ["defi/lending.md"]
