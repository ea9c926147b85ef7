"""Two follow-ups in one code thread on the real router, code-sandbox and coder-agent
(scripted model): each turn edits the program before it, the examples stated in earlier
turns are carried and enforced (a revision that breaks one is not chosen), and the
answer says which earlier checks still hold."""

from __future__ import annotations

import pytest

from shared.contracts import TaskResult, TaskSubmit
from tests.threads.conftest import Stack

pytestmark = pytest.mark.integration

FIRST = "```python\ndef double(x):\n    return x * 2\n```"
BREAKS = "```python\ndef double(x):\n    return int(x) * 3 - 3\n```"  # double('3') == 6, but double(2) == 3
SECOND = "```python\ndef double(x):\n    return int(x) * 2\n```"
THIRD = "```python\ndef double(x):\n    x = int(x)\n    return None if x < 0 else x * 2\n```"
CODER_REPLIES = [FIRST, BREAKS, SECOND, THIRD]


def run(stack: Stack, task: TaskSubmit) -> TaskResult:
    result = stack.run(task)
    assert result is not None
    return result


def test_two_follow_ups_carry_and_enforce_the_earlier_checks(code_stack: Stack) -> None:
    first = run(code_stack, TaskSubmit(kind="code", text="Write a Python function double(x) that returns twice x.\n"
                                                         "double(2) == 4"))
    assert first.status == "done", first.answer
    second = run(code_stack, TaskSubmit(text="Change double so it also accepts a string of digits.\ndouble('3') == 6",
                                        follows=first.task_id))
    assert second.status == "done", second.answer
    assert [(a.origin, a.chosen) for a in second.attempts] == [("greedy", False), ("sampled", True)]
    carried = {c.check: c for c in second.checks if c.turn}
    assert carried["assert double(2) == 4"].turn == first.task_id and carried["assert double(2) == 4"].held
    assert "-    return x * 2" in second.diff and "+    return int(x) * 2" in second.diff  # an edit of the first program

    third = run(code_stack, TaskSubmit(text="Change double so that it returns None for a negative number.\n"
                                            "double(-1) == None", follows=second.task_id))
    assert third.status == "done", third.answer
    held = {(c.check, c.turn) for c in third.checks if c.held}
    assert {("assert double(2) == 4", first.task_id), ("assert double('3') == 6", second.task_id),
            ("assert double(-1) == None", "")} <= held
    assert "Earlier checks of this conversation: 2 of 2 still hold." in third.answer

    record = code_stack.thread(third.task_id)
    assert record is not None and [t.task_id for t in record.turns] == [first.task_id, second.task_id, third.task_id]
    assert record.turns[-1].code and "None if x < 0" in record.turns[-1].code
