"""coder-agent's side of a follow-up, with scripted models and a fake sandbox: the last
program is the file the answer edits, the checks a person stated earlier are enforced
(a candidate that breaks one is never chosen), the model's earlier tests are reported,
an example the new request restates supersedes the old one, and every check of the
answer is recorded with where it came from."""

from __future__ import annotations

import time

from services.coder_agent import followup
from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from shared.contracts import AgentJob, CheckRecord, ThreadTurn
from tests.spine.test_solver import run_python, scripted

FIRST = "def double(x):\n    return x * 2\n"
TURN = ThreadTurn(
    task_id="t-first", text="Write double(x) returning twice x. double(2) == 4.", agent="coder", status="done",
    answer=f"```python\n{FIRST}```", code=FIRST,
    checks=[CheckRecord(check="assert double(2) == 4", source="task", turn="t-first", held=True),
            CheckRecord(check="assert double(-1) == -2", source="model", turn="t-first", held=True),
            CheckRecord(check="assert double(5) == 10", source="task", turn="t-first", held=True),
            CheckRecord(check="assert double(0) == 1", source="model", turn="t-first", held=False)],
)
# Keeps double(2) == 4 and meets the new request, but negatives now give 0 (the model's earlier test breaks).
GOOD = "```python\ndef double(x):\n    x = int(x)\n    return max(x, 0) * 2\n```"
# Meets the new request, keeps double(2) == 4, but breaks the stated double(5) == 10 of the first turn.
BREAKS = "```python\ndef double(x):\n    return int(x) * 3 - 2\n```"


def job(text: str, thread: list[ThreadTurn]) -> AgentJob:
    return AgentJob(task_id="t-next", step_id="t-next.1", agent="coder", text=text, deadline=time.time() + 60,
                    thread=thread)


def test_prepare_edits_the_last_program_and_sorts_its_checks() -> None:
    follow = followup.prepare(job("Change double to accept digit strings: double('5') == 10.\nAnd double(5) == 11.",
                                  [TURN]))
    assert follow.job.files == [] and follow.edits == FIRST
    context = follow.job.context
    assert "Write double(x) returning twice x." in context and FIRST.strip() in context
    assert context.index(FIRST.strip()) < context.index("Now change that program as asked: Change double")
    assert [c.check for c in follow.enforced] == ["assert double(2) == 4"]  # double(0) == 1 never held
    assert [c.check for c in follow.reported] == ["assert double(-1) == -2"]  # a held model test: reported
    assert [c.check for c in follow.superseded] == ["assert double(5) == 10"]
    assert "double(5) == 11" in follow.superseded[0].note
    plain = followup.prepare(job("Write triple(x).", []))
    assert plain.job.files == [] and not plain.enforced and plain.job.context == ""


async def test_a_revision_that_breaks_an_earlier_stated_check_is_never_chosen() -> None:
    engine = scripted([BREAKS, GOOD])
    solver = CodeSolver(engine, run_python, CoderSettings(candidates=2, max_candidates=4, write_tests=False))
    result = await followup.solve(solver, job("Change double so it also takes digit strings: double('3') == 6.", [TURN]),
                                  run_python)
    assert result.status == "done" and "max(x, 0)" in (result.code or "")
    assert [a.chosen for a in result.attempts] == [False, True]
    assert result.files[0].path == followup.START_FILE and "-    return x * 2" in result.diff
    by_check = {c.check: c for c in result.checks}
    assert by_check["assert double('3') == 6"].turn == "" and by_check["assert double('3') == 6"].held
    carried = by_check["assert double(2) == 4"]
    assert (carried.source, carried.turn, carried.held) == ("task", "t-first", True)
    reported = by_check["assert double(-1) == -2"]
    assert (reported.source, reported.held) == ("model", False) and "not enforced" in reported.note
    assert "Earlier checks of this conversation: 2 of 3 still hold" in result.answer
    assert "assert double(-1) == -2  # a test the model wrote for task t-first" in result.answer
    assert "kept from earlier in the conversation (task t-first)" in result.answer
    prompt = engine.requests[0].messages[-1]["content"]
    assert "Earlier requests" in prompt and "return x * 2" in prompt


async def test_when_every_candidate_breaks_an_earlier_check_the_task_fails_and_says_which() -> None:
    solver = CodeSolver(scripted([BREAKS]), run_python, CoderSettings(candidates=1, max_candidates=2, write_tests=False))
    result = await followup.solve(solver, job("Change double so it also takes digit strings.", [TURN]), run_python)
    assert result.status == "failed"
    assert "No longer holding" in result.answer and "assert double(5) == 10  # stated in task t-first" in result.answer
