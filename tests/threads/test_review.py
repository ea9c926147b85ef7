"""Review on the real router (FakeAgents answer): a task submitted with --review waits in
input_required with its proposed answer until ``syndicate review`` revises, approves or
rejects it; the pause lives in the KV, so it outlasts a router killed with -9, keeps its
deadline and can be cancelled."""

from __future__ import annotations

import json

import pytest

from shared.contracts import TaskSubmit
from shared.errors import InvalidPayload
from tests.gateway.fake_agent import ANSWER
from tests.threads.conftest import Stack

pytestmark = pytest.mark.integration

REASONER_ANSWER = ANSWER.format(agent="reasoner")


def test_a_review_is_revised_then_approved(stack: Stack) -> None:
    out = stack.cli_json("submit", "--review", "--kind", "reason", "What is a liquidation?", code=3)
    tid = out["task_id"]
    assert out["status"] == "input_required" and out["answer"] == REASONER_ANSWER
    assert out["review"][-1]["n"] == 1 and out["review"][-1]["decision"] is None
    assert stack.cli_json("result", tid)["status"] == "input_required"  # the proposed answer, still waiting

    revised = stack.cli_json("review", tid, "--revise", "Name who repays the debt.", code=3)
    assert revised["status"] == "input_required" and revised["review"][-1]["n"] == 2
    first, second = stack.jobs_of(tid)
    assert (first.step_id, second.step_id) == (f"{tid}.1", f"{tid}.2")
    assert "Name who repays the debt." in second.text  # the reviewer's feedback is the request ...
    assert [(t.text, t.answer) for t in second.thread] == [("What is a liquidation?", REASONER_ANSWER)]  # ... on its answer

    done = stack.cli_json("review", tid, "--approve", code=0)
    assert done["status"] == "done" and done["answer"] == REASONER_ANSWER
    assert [(r["n"], r["decision"]) for r in done["review"]] == [(1, "revise"), (2, "approve")]
    assert done["review"][0]["feedback"] == "Name who repays the debt."
    state = stack.state(tid)
    assert state is not None
    # 'queued' is the submitter's record, there unless the router wrote first (shared/bus.py)
    steps = [s for s, _ in state.history if s != "queued"]
    assert steps == ["routed", "running", "input_required", "running", "input_required", "done"]

    again = stack.cli("review", tid, "--reject")
    assert again.returncode == 2 and "wrong_state" in again.stderr  # a task ends once

    # The trace: each pause is a router span, each decision a CLI span under it.
    spans = json.loads(stack.cli("trace", tid, "--json").stdout)
    pauses = [s for s in spans if s["name"] == "task input_required"]
    decisions = [s for s in spans if s["name"] == "syndicate review"]
    assert [p["service"] for p in pauses] == ["router", "router"] and len(decisions) == 2
    assert {d["parent_id"] for d in decisions} == {p["span_id"] for p in pauses}


def test_a_rejected_review_ends_the_task_rejected(stack: Stack) -> None:
    paused = stack.run(TaskSubmit(kind="code", text="Write square(x).", review=True))
    assert paused is not None and paused.status == "input_required"
    with pytest.raises(InvalidPayload, match="feedback"):
        stack.review(paused.task_id, "revise", " ")

    rejected = stack.cli_json("review", paused.task_id, "--reject", "--reason", "it must take complex numbers", code=1)
    assert rejected["status"] == "rejected" and rejected["error"]["code"] == "review_rejected"
    assert "complex numbers" in rejected["error"]["message"] and rejected["review"][-1]["decision"] == "reject"
    unknown = stack.cli("review", "t-nosuchtask", "--approve")
    assert unknown.returncode == 2 and "not_found" in unknown.stderr


def test_a_paused_task_outlasts_a_router_kill(stack: Stack) -> None:
    waits, cancelled, short = (TaskSubmit(kind="reason", text=f"What is {w}?", review=True, timeout_s=t)
                               for w, t in (("collateral", 600.0), ("a margin call", 600.0), ("a vault", 15.0)))
    for task in (waits, cancelled, short):
        stack.run(task, wait=False)
    for task in (waits, cancelled, short):
        stack.wait_status(task.task_id, "input_required")

    stack.restart_router()  # kill -9, then a new router on the same bus: it knows the pauses from the KV
    assert stack.state(waits.task_id).status == "input_required"  # type: ignore[union-attr]
    stack.bus(lambda client: client.cancel(cancelled.task_id))
    assert stack.wait_status(cancelled.task_id, "cancelled").result.error.code == "cancelled"  # type: ignore[union-attr]

    done = stack.review(waits.task_id, "approve")
    assert done is not None and done.status == "done" and done.answer == REASONER_ANSWER
    # A pause keeps the task's deadline: the new router's sweeper ends it on time.
    timed_out = stack.wait_status(short.task_id, "timeout")
    assert timed_out.review and timed_out.review[0].decision is None
