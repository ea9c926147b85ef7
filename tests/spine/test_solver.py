"""coder-agent's write → test → repair loop, with a scripted model and a fake sandbox."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from services.coder_agent.prompts import extract_code, provided_tests
from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from shared.contracts import AgentJob, ExecRequest, ExecResult, FileIn
from shared.llm.base import ScriptedEngine

BROKEN = "```python\ndef add(a, b):\n    return a - b\n```"
FIXED = "```python\ndef add(a, b):\n    return a + b\n```"
TESTS = "```python\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n```"


def job(**kw) -> AgentJob:
    kw.setdefault("text", "Write add(a, b).")
    return AgentJob(task_id="t-1", step_id="t-1.1", agent="coder", deadline=time.time() + 60, **kw)


async def run_python(req: ExecRequest) -> ExecResult:
    """A fake sandbox: a plain subprocess, no isolation (unit tests run trusted snippets only)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", req.code + "\n" + (req.test_code or ""),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    status = "ok" if proc.returncode == 0 else "runtime_error"
    return ExecResult(status=status, exit_code=proc.returncode, stdout=out.decode(), stderr=err.decode())


async def test_repairs_from_failed_tests() -> None:
    engine = ScriptedEngine([BROKEN, TESTS, FIXED])
    events: list[str] = []

    async def progress(text: str) -> None:
        events.append(text)

    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3), progress=progress).solve(job())
    assert result.status == "done"
    assert [a.passed for a in result.attempts] == [False, True]
    assert "a + b" in (result.code or "")
    # The repair prompt showed the model the failing check and what the code returned.
    feedback = engine.requests[2].messages[-1]["content"]
    assert "assert add(2, 3) == 5" in feedback and "evaluated to -1" in feedback
    assert any("repairing" in e for e in events)


async def test_gives_up_after_max_attempts() -> None:
    engine = ScriptedEngine([BROKEN, TESTS, BROKEN])
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=2)).solve(job())
    assert result.status == "failed"
    assert len(result.attempts) == 2
    assert result.error is not None and result.error.code == "tests_failed"


async def test_uses_tests_from_the_task_instead_of_writing_them() -> None:
    engine = ScriptedEngine([FIXED])
    seen: list[ExecRequest] = []

    async def sandbox(req: ExecRequest) -> ExecResult:
        seen.append(req)
        return await run_python(req)

    result = await CodeSolver(engine, sandbox, CoderSettings()).solve(job(text="Write add(a, b).\nassert add(1, 2) == 3"))
    assert result.status == "done"
    assert len(engine.requests) == 1  # no test-writing generation
    assert "assert add(1, 2) == 3" in (seen[0].test_code or "")
    assert result.attempts[0].tests == "assert add(1, 2) == 3"


async def test_cancel_ends_the_step_cancelled() -> None:
    engine = ScriptedEngine([FIXED], token_delay_s=0.01)
    engine.cancel("t-1")
    result = await CodeSolver(engine, run_python, CoderSettings()).solve(job())
    assert result.status == "cancelled"


async def test_deadline_ends_the_step_timeout() -> None:
    engine = ScriptedEngine([FIXED])
    j = job()
    j.deadline = time.time() - 1
    result = await CodeSolver(engine, run_python, CoderSettings()).solve(j)
    assert result.status == "timeout"


async def test_edits_a_given_file_and_returns_a_diff() -> None:
    engine = ScriptedEngine([FIXED, TESTS])
    original = FileIn(path="calc.py", content="def add(a, b):\n    return a - b\n")
    result = await CodeSolver(engine, run_python, CoderSettings()).solve(job(files=[original]))
    assert result.files[0].path == "calc.py"
    assert "return a + b" in result.files[0].content
    assert "-    return a - b" in result.diff and "+    return a + b" in result.diff


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("Here:\n```python\nx = 1\n```\nDone.", "x = 1\n"),
        ("```\ny = 2\n```", "y = 2\n"),
        ("```python\na = 1\n```\n```python\nlonger = 2\nb = 3\n```", "longer = 2\nb = 3\n"),
        ("z = 3", "z = 3\n"),
        ("```python\nunterminated = 4\n", "unterminated = 4\n"),
    ],
)
def test_extract_code(answer: str, code: str) -> None:
    assert extract_code(answer) == code


def test_provided_tests_from_files_and_text() -> None:
    files = [FileIn(path="tests/test_x.py", content="assert f() == 1"), FileIn(path="x.py", content="")]
    assert provided_tests("do it\nassert g(2) == 4", files) == "assert f() == 1\n\nassert g(2) == 4"
    assert provided_tests("no tests here", []) == ""


PRIME = "```python\ndef is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n```"
PRIME_2 = "```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    return all(n % d != 0 for d in range(2, n))\n```"
WRONG_TESTS = "```python\nassert is_prime(2) == True\nassert is_prime(51) == True\nassert is_prime(4) == False\nassert is_prime(\n```"


async def test_a_wrong_model_test_is_disputed_when_the_repair_keeps_the_value() -> None:
    engine = ScriptedEngine([PRIME, WRONG_TESTS, PRIME_2])
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3)).solve(job(text="Write is_prime(n)."))
    assert result.status == "done"
    assert [a.passed for a in result.attempts] == [False, True]
    assert result.attempts[-1].disputed == ["assert is_prime(51) == True"]
    # The truncated last line never became a check.
    assert result.attempts[0].tests.splitlines() == ["assert is_prime(2) == True", "assert is_prime(51) == True", "assert is_prime(4) == False"]
    assert "Disputed" in result.answer


async def test_the_tasks_own_tests_are_never_disputed() -> None:
    engine = ScriptedEngine([PRIME, PRIME_2, PRIME])
    text = "Write is_prime(n).\nassert is_prime(51) == True"
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3)).solve(job(text=text))
    assert result.status == "failed"
    assert all(not a.disputed for a in result.attempts)


async def test_pytest_style_task_tests_are_called() -> None:
    tests = FileIn(path="test_add.py", content="def test_add():\n    assert add(2, 2) == 4\n")
    engine = ScriptedEngine([BROKEN, FIXED])
    result = await CodeSolver(engine, run_python, CoderSettings()).solve(job(files=[tests]))
    assert [a.passed for a in result.attempts] == [False, True]


def test_strip_scaffolding_keeps_definitions_and_drops_demo_code() -> None:
    from services.coder_agent.prompts import signatures, strip_scaffolding

    code = (
        '"""Module doc."""\nimport math\nLIMIT = 3\n\ndef f(x, *, y=2):\n    return x\n\n'
        'def check():\n    assert f(1) == 2\n\ncheck()\nprint(f(2))\nassert f(3) == 3\n'
        'if __name__ == "__main__":\n    print("demo")\n'
    )
    clean = strip_scaffolding(code)
    assert "def f" in clean and "import math" in clean and "LIMIT = 3" in clean and '"""Module doc."""' in clean
    assert "check()\n" not in clean.replace("def check():", "") and "print" not in clean and "__main__" not in clean
    assert signatures(clean) == "def f(x, *, y=2): ...\ndef check(): ..."
    assert strip_scaffolding("def broken(:\n") == "def broken(:\n"


async def test_the_same_program_again_disputes_its_own_wrong_check() -> None:
    engine = ScriptedEngine([PRIME, WRONG_TESTS, PRIME])
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3)).solve(job(text="Write is_prime(n)."))
    assert result.status == "done" and result.attempts[-1].disputed == ["assert is_prime(51) == True"]
    assert result.tests[0].status == "ok"  # the final verdict is of the checks that stand


async def test_a_real_bug_is_repaired_not_disputed() -> None:
    engine = ScriptedEngine([BROKEN, TESTS, BROKEN.replace("a - b", "b - a"), FIXED])
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3)).solve(job())
    # b - a gives a different (still wrong) value, so nothing is disputed; the fix passes.
    assert result.status == "done" and [a.passed for a in result.attempts] == [False, False, True]
    assert result.attempts[-1].disputed == []


async def test_doctest_examples_in_the_task_are_trusted_checks() -> None:
    text = 'def add(a, b):\n    """Add.\n    >>> add(2, 3)\n    5\n    >>> add(0, 0)\n    0\n    """\n'
    engine = ScriptedEngine([BROKEN, BROKEN, BROKEN])
    result = await CodeSolver(engine, run_python, CoderSettings(max_attempts=3)).solve(job(text=text))
    assert result.attempts[0].tests == "assert add(2, 3) == 5\nassert add(0, 0) == 0"
    assert result.status == "failed"  # task checks are never disputed, even when the model insists
    assert len(engine.requests) == 3  # no test-writing generation


async def test_uses_retrieval_when_the_task_names_a_collection() -> None:
    from shared.contracts import SearchHit, SearchReply

    async def search(req):  # type: ignore[no-untyped-def]
        return SearchReply(collection=req.collection, hits=[
            SearchHit(text="def add(a, b): use the + operator", path="docs/add.md", start_line=1, end_line=3, score=0.9),
            SearchHit(text="noise", path="x.md", start_line=1, end_line=1, score=0.01),
        ])

    engine = ScriptedEngine([FIXED, TESTS])
    result = await CodeSolver(engine, run_python, CoderSettings(), search=search).solve(job(collection="docs"))
    assert result.status == "done"
    assert "[docs/add.md:1-3]" in engine.requests[0].messages[-1]["content"]
    assert [(c.path, c.start_line) for c in result.citations] == [("docs/add.md", 1)]


async def test_first_attempt_is_greedy_and_repairs_sample() -> None:
    engine = ScriptedEngine([BROKEN, TESTS, FIXED])
    await CodeSolver(engine, run_python, CoderSettings(repair_temperature=0.7)).solve(job())
    code_requests = [r for r in engine.requests if r.messages[0]["content"].startswith("You are an expert")]
    assert [r.temperature for r in code_requests] == [0.0, 0.7]
