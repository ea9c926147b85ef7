"""reasoner-agent's citations with scripted models: only supported labels survive, uncited
sentences are attributed, and "nothing relevant" when the sources do not answer."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from services.reasoner_agent.answerer import Answerer
from services.reasoner_agent.citations import ground, refuses
from services.reasoner_agent.prompts import labelled
from services.reasoner_agent.settings import ReasonerSettings
from shared.contracts import AgentJob, SearchHit, SearchReply, SearchRequest
from shared.llm.base import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
AMM = SearchHit(text="The classic design keeps the product of the two reserves constant: x * y = k. "
                     "The marginal price moves with every trade.", path="notes/amm.md", start_line=7, end_line=14, score=0.6)
LIQ = SearchHit(text="A position becomes liquidatable when its health factor drops below 1; the liquidator "
                     "receives collateral at a discount.", path="notes/liq.md", start_line=7, end_line=12, score=0.5)
HITS = [AMM, LIQ]


def job(text: str = "When can a position be liquidated?") -> AgentJob:
    return AgentJob(task_id="t-5", step_id="t-5.1", agent="reasoner", text=text, collection="notes",
                    deadline=time.time() + 60)


async def search(req: SearchRequest) -> SearchReply:
    return SearchReply(hits=HITS, collection=req.collection)


def test_a_label_on_the_wrong_passage_is_replaced_by_the_one_that_holds_the_claim() -> None:
    text, cites = ground("A position becomes liquidatable when its health factor drops below 1 [notes/amm.md:7-14].", HITS)
    assert text == "A position becomes liquidatable when its health factor drops below 1. [notes/liq.md:7-12]"
    assert [(c.path, c.start_line) for c in cites] == [("notes/liq.md", 7)]


def test_invented_labels_are_removed_from_the_text_too() -> None:
    text, cites = ground("The reserves product stays constant [notes/amm.md:7-14] [made/up.md:1-9].", HITS)
    assert "made/up.md" not in text and text.endswith("[notes/amm.md:7-14]")
    assert [c.path for c in cites] == ["notes/amm.md"]


def test_a_label_after_the_full_stop_or_on_its_own_line_stays_with_its_sentence() -> None:
    text, cites = ground("Liquidators receive collateral at a discount.\n[notes/liq.md:7-12]\n\n- Reserves product constant. [notes/amm.md:7-14]", HITS)
    assert text.splitlines()[0] == "Liquidators receive collateral at a discount. [notes/liq.md:7-12]"
    assert text.splitlines()[-1] == "- Reserves product constant. [notes/amm.md:7-14]"
    assert [c.path for c in cites] == ["notes/liq.md", "notes/amm.md"]


def test_a_sentence_no_passage_supports_gets_no_citation() -> None:
    text, cites = ground("Bananas are yellow and grow in bunches [notes/amm.md:7-14].", HITS)
    assert text == "Bananas are yellow and grow in bunches." and cites == []


def test_the_model_saying_the_sources_do_not_answer_is_recognised() -> None:
    assert refuses("The sources do not contain information about Bitcoin mining.")
    assert refuses("I cannot answer this from the given sources.")
    assert refuses("Nothing relevant was found.")
    assert not refuses("A position is liquidated below a health factor of 1. It is not mentioned when fees apply.")


async def test_a_grounded_answer_keeps_its_citations() -> None:
    engine = ScriptedEngine(["A position is liquidatable when its health factor drops below 1 [notes/liq.md:7-12]."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job())
    assert result.status == "done" and "nothing relevant" not in result.answer
    assert [c.path for c in result.citations] == ["notes/liq.md"]


async def test_a_model_that_finds_nothing_in_the_sources_gives_the_plain_nothing_relevant() -> None:
    engine = ScriptedEngine(["The sources do not mention Bitcoin's difficulty adjustment [notes/amm.md:7-14]."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job("How does Bitcoin adjust difficulty?"))
    assert "has nothing relevant" in result.answer and result.citations == []


async def test_an_answer_no_passage_supports_is_not_passed_off_as_from_the_collection() -> None:
    engine = ScriptedEngine(["Canberra is the capital of Australia."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job("What is the capital of Australia?"))
    assert "has nothing relevant" in result.answer and result.citations == []


def test_the_labelled_question_set_is_sound() -> None:
    """Every answerable question's facts are stated in its labelled lines; enough questions."""
    doc = json.loads((REPO / "examples" / "defi-notes-questions.json").read_text())
    assert len(doc["answerable"]) >= 20 and len(doc["off_corpus"]) >= 5

    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s.lower().replace("`", ""))

    for q in doc["answerable"]:
        lines = {s["path"]: (REPO / s["path"]).read_text().splitlines() for s in q["sources"]}
        text = norm(" ".join(" ".join(lines[s["path"]][s["start_line"] - 1 : s["end_line"]]) for s in q["sources"]))
        for fact in q["facts"]:
            assert any(norm(p) in text or norm(p).replace(" ", "") in text.replace(" ", "") for p in fact), (q["question"], fact)


def test_source_numbers_become_labels() -> None:
    assert labelled("Reserves stay constant [1]. Both [1, 2]. Unknown [7].", HITS) == (
        "Reserves stay constant [notes/amm.md:7-14]. Both [notes/amm.md:7-14] [notes/liq.md:7-12]. Unknown .")


def test_near_ties_are_attributed_to_the_better_ranked_passage() -> None:
    words = "liquidators repay debt borrower collateral discount keeping protocols"
    first = SearchHit(text=words, path="a.md", start_line=1, end_line=2, score=0.5)
    second = SearchHit(text=f"{words} receive", path="b.md", start_line=1, end_line=2, score=0.4)
    sentence = ("Liquidators repay debt, receive borrower collateral at a discount, keeping protocols solvent "
                "during sudden volatile market crashes.")
    _, cites = ground(sentence, [first, second])  # rarity-weighted 4/11 vs 5/11 of its words
    assert [c.path for c in cites] == ["a.md"]


def test_a_passages_file_name_supports_the_sentence_that_names_it() -> None:
    wrap = SearchHit(text='def wrap(text, width=70, **kwargs):\n    """Wrap a single paragraph of text, returning a list of '
                          'wrapped lines."""', path="/usr/lib/python3.11/textwrap.py", start_line=368, end_line=381, score=0.56)
    other = SearchHit(text="def split(s, comments=False, posix=True):\n    \"\"\"Split the string s using shell-like syntax.\"\"\"",
                      path="/usr/lib/python3.11/shlex.py", start_line=301, end_line=310, score=0.4)
    text, cites = ground("Use textwrap.wrap for a long paragraph, as textwrap suggests.", [wrap, other])
    assert [c.path for c in cites] == [wrap.path] and text.endswith("[/usr/lib/python3.11/textwrap.py:368-381]")


def test_the_code_question_set_is_sound() -> None:
    """Every answerable question over the standard-library collection names defs that exist
    and facts the defs (or their module's name) state; enough off-corpus questions."""
    import ast
    import importlib

    doc = json.loads((REPO / "bench" / "data" / "code_questions.json").read_text())
    assert len(doc["answerable"]) >= 20 and len(doc["off_corpus"]) >= 10
    sources = {}
    for m in doc["modules"]:
        path = Path(importlib.import_module(m).__file__ or "")
        text = path.read_text()
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                sources[(m, node.name)] = ast.get_source_segment(text, node) or ""
    for q in doc["answerable"]:
        found = " ".join(f"{s['module']} {sources[(s['module'], s['def'])]}" for s in q["sources"]).lower()
        for fact in q["facts"]:
            assert any(p.lower().rstrip("(") in found for p in fact), (q["question"], fact)


async def test_a_refusal_over_a_passage_close_to_the_question_is_asked_again() -> None:
    engine = ScriptedEngine(["The sources do not say when a position can be liquidated.",
                             "A position is liquidatable when its health factor drops below 1."])
    result = await Answerer(engine, search, ReasonerSettings()).answer(job())
    assert result.status == "done" and "nothing relevant" not in result.answer
    assert [c.path for c in result.citations] == ["notes/liq.md"] and len(engine.requests) == 2
    retry = engine.requests[1]
    assert retry.request_id == "t-5.r" and retry.messages[-2]["role"] == "assistant"
    # Far from the question (below sure_score): the refusal stands, nothing is asked again.
    engine = ScriptedEngine(["The sources do not say when a position can be liquidated.", "unused"])
    result = await Answerer(engine, search, ReasonerSettings(sure_score=0.9)).answer(job())
    assert "has nothing relevant" in result.answer and len(engine.requests) == 1
