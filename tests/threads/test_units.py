"""The pure parts of threads and review: the review state machine on a TaskState, how a
job's history is trimmed and a thread record kept within bounds, and how an A2A reply in
a paused task reads as a decision."""

from __future__ import annotations

import pytest
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import Role
from a2a.utils.errors import InvalidParamsError

from services.gateway import a2a_tasks as at
from services.router import review
from services.router.threads import compact, fit, turn_of
from shared.contracts import (
    CheckRecord,
    ReviewDecision,
    StepRecord,
    TaskResult,
    TaskState,
    TaskSubmit,
    ThreadRecord,
    ThreadTurn,
)


def paused_state() -> TaskState:
    task = TaskSubmit(task_id="t-1", kind="code", text="Write f(x).", review=True)
    state = TaskState(task=task, status="running", route=["coder"], steps=[StepRecord(step_id="t-1.1", agent="coder",
                                                                                     status="done")])
    proposed = TaskResult(task_id="t-1", status="done", kind="code", answer="```python\ndef f(x): ...\n```",
                          code="def f(x): ...\n", checks=[CheckRecord(check="assert f(1) == 1", held=True),
                                                          CheckRecord(check="assert f(2) == 3", held=False)])
    review.pause(state, proposed, "t-1.1")
    return state


def test_a_pause_holds_the_proposed_result_and_a_round() -> None:
    state = paused_state()
    assert state.status == "input_required" and state.result is not None and state.result.status == "input_required"
    [rnd] = state.review
    assert (rnd.n, rnd.step_id, rnd.proposed.text) == (1, "t-1.1", "Write f(x).")
    assert [c.check for c in rnd.proposed.checks] == ["assert f(1) == 1"]  # only checks it held travel on
    assert rnd.proposed.checks[0].turn == "t-1"


def test_revise_adds_a_step_that_sees_the_proposed_answer_then_approve_ends_it() -> None:
    state = paused_state()
    outcome = review.Decided()
    decision = ReviewDecision(task_id="t-1", decision="revise", feedback="Handle negatives.", round=1)
    assert review.decide(state, decision, outcome)
    assert outcome.revision is not None and outcome.revision.step_id == "t-1.2" and state.status == "running"
    text, rounds = review.revision_job(state, "t-1.2")  # type: ignore[misc]
    assert "Handle negatives." in text and [r.text for r in rounds] == ["Write f(x)."]

    again = review.Decided()  # the same decision redelivered before the step was dispatched
    assert not review.decide(state, decision, again) and again.revision is not None and not again.note

    state.steps[-1].status = "done"
    review.pause(state, TaskResult(task_id="t-1", status="done", kind="code", answer="v2", code="def f(x): return x\n"),
                 "t-1.2")
    assert state.review[-1].proposed.text == text  # the second round answered the revision request
    stale = review.Decided()
    assert not review.decide(state, ReviewDecision(task_id="t-1", decision="approve", round=1), stale)
    assert "round 1 is over" in stale.note
    done = review.Decided()
    assert review.decide(state, ReviewDecision(task_id="t-1", decision="approve"), done)
    assert done.final is not None and done.final.status == "done" and done.final.answer == "v2"
    assert [r.decision for r in done.final.review] == ["revise", "approve"]
    late = review.Decided()
    assert not review.decide(state, ReviewDecision(task_id="t-1", decision="reject"), late) and "not waiting" in late.note


def test_reject_ends_the_task_rejected_with_the_reason() -> None:
    state = paused_state()
    outcome = review.Decided()
    assert review.decide(state, ReviewDecision(task_id="t-1", decision="reject", feedback="too slow"), outcome)
    assert outcome.final is not None and outcome.final.status == "rejected" and state.status == "rejected"
    assert outcome.final.error is not None and outcome.final.error.code == "review_rejected"
    assert "too slow" in outcome.final.error.message and outcome.final.code == "def f(x): ...\n"


def test_a_revision_needs_feedback() -> None:
    with pytest.raises(ValueError, match="feedback"):
        ReviewDecision(task_id="t-1", decision="revise", feedback="  ")


def turn(n: int, code: str | None = None, answer: str = "a") -> ThreadTurn:
    return ThreadTurn(task_id=f"t-{n}", text=f"request {n}", answer=answer, code=code, status="done")


def test_a_job_keeps_the_latest_program_and_drops_the_oldest_turns_first() -> None:
    turns = [turn(1, "x = 1\n" * 100), turn(2, "y = 2\n" * 100), turn(3, answer="b" * 50)]
    kept = fit(turns, budget=10_000)
    assert [t.code is not None for t in kept] == [False, True, False]  # only the program a follow-up edits
    small = fit(turns, budget=675)  # 679 characters in all; t-1 holds 10
    assert [t.task_id for t in small] == ["t-2", "t-3"]
    assert [t.task_id for t in fit(turns, budget=1)] == ["t-3"]  # the turn it follows always stays


def test_a_thread_record_compacts_old_turns_then_drops_them() -> None:
    record = ThreadRecord(thread_id="t-1", turns=[turn(n, "z = 0\n" * 200, answer="w" * 2_000) for n in range(1, 6)])
    compact(record, budget=8_000)
    assert [t.task_id for t in record.turns] == ["t-1", "t-2", "t-3", "t-4", "t-5"]
    assert record.turns[-1].code and not record.turns[0].code and len(record.turns[0].answer) <= 600
    compact(record, budget=3_500)
    assert record.turns[-1].task_id == "t-5" and len(record.turns) < 5


def test_turn_of_a_task_uses_its_agents_kind() -> None:
    state = TaskState(task=TaskSubmit(task_id="t-9", text="Why?"), status="done", route=["reasoner"],
                      result=TaskResult(task_id="t-9", status="done", kind="reason", answer="Because."))
    t = turn_of(state)
    assert (t.kind, t.agent, t.answer, t.finished_at is not None) == ("reason", "reasoner", "Because.", True)


@pytest.mark.parametrize(("text", "metadata", "expected"), [
    ("approve", {}, ("approve", "")),
    ("LGTM!", {}, ("approve", "")),
    ("Reject: it ignores floats", {}, ("reject", "it ignores floats")),
    ("Use a loop instead of recursion.", {}, ("revise", "Use a loop instead of recursion.")),
    ("fine by me", {"decision": "approve"}, ("approve", "fine by me")),
])
def test_an_a2a_reply_reads_as_a_decision(text: str, metadata: dict, expected: tuple[str, str]) -> None:
    msg = new_text_message(text, role=Role.ROLE_USER, task_id="t-1")
    assert at.decision_of(msg, metadata) == expected


def test_an_empty_or_unknown_decision_is_refused() -> None:
    with pytest.raises(InvalidParamsError):
        at.decision_of(new_text_message(" ", role=Role.ROLE_USER, task_id="t-1"), {})
    with pytest.raises(InvalidParamsError, match="approve, revise or reject"):
        at.decision_of(new_text_message("x", role=Role.ROLE_USER, task_id="t-1"), {"decision": "maybe"})
