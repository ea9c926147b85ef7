"""Threads on the real router (FakeAgents answer): ``submit --continue`` gives the agent the
exchange before it (the chain of turns it follows, so continuing an older turn branches),
a follow-up goes to the agent that answered before, and ``syndicate thread`` shows it."""

from __future__ import annotations

import pytest

from shared.contracts import TaskSubmit
from tests.gateway.fake_agent import ANSWER
from tests.threads.conftest import Stack

pytestmark = pytest.mark.integration


def test_follow_ups_see_the_turns_they_continue(stack: Stack) -> None:
    first = stack.run(TaskSubmit(kind="code", text="Write is_even(n)."))
    assert first is not None and first.status == "done"
    t1 = first.task_id
    second = stack.cli_json("submit", "--continue", t1, "Now make it accept strings of digits too.", code=0)
    t2 = second["task_id"]
    assert second["thread_id"] == t1  # a lone task founds its thread when continued
    [job2] = stack.jobs_of(t2)
    assert job2.agent == "coder"  # words alone would go to the reasoner: a follow-up stays with its agent
    assert [(t.task_id, t.text, t.answer) for t in job2.thread] == [(t1, "Write is_even(n).", ANSWER.format(agent="coder"))]

    third = stack.run(TaskSubmit(kind="reason", text="Explain the change.", follows=t2))
    branch = stack.run(TaskSubmit(text="Now make it odd instead.", follows=t1))
    assert third is not None and branch is not None
    [job3] = stack.jobs_of(third.task_id)
    assert job3.agent == "reasoner" and [t.task_id for t in job3.thread] == [t1, t2]
    [job4] = stack.jobs_of(branch.task_id)
    assert [t.task_id for t in job4.thread] == [t1]  # continuing an older turn branches from it

    record = stack.cli_json("thread", third.task_id)
    assert record["thread_id"] == t1
    assert [(t["task_id"], t["follows"], t["status"]) for t in record["turns"]] == [
        (t1, None, "done"), (t2, t1, "done"), (third.task_id, t2, "done"), (branch.task_id, t1, "done")]
    shown = stack.cli("thread", t2)
    assert shown.returncode == 0 and "turn 4" in shown.stdout and "continues turn 1" in shown.stdout

    missing = stack.cli("submit", "--continue", "t-nosuchtask", "More.")
    assert missing.returncode == 2 and "no task t-nosuchtask" in missing.stderr
