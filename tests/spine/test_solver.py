"""coder-agent's strategy, with scripted models and a fake sandbox: the task's stated
examples as checks (MBPP-shaped tasks included), unverified answers said so, rule checks
over agreement, parallel candidates, checks as each ends, early stop when the evidence
decides, samples only while it does not, dropped and contradictory model tests, repair
from tracebacks only, the best seen kept."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from services.coder_agent.prompts import extract_code, is_tests_request
from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from shared.contracts import AgentJob, ExecRequest, ExecResult, FileIn
from shared.errors import QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, ScriptedEngine, TokenCallback
from tests.conftest import until

ADD_1 = "```python\ndef add_1(a, b):\n    return a + b + 1\n```"
ADD_1_WRONG = "```python\ndef add_1(a, b):\n    return a + b\n```"
ADD_1_CRASH = "```python\ndef add_1(a, b):\n    return a + b + one\n```"
ADD_1_TESTS = "```python\nassert add_1(1, 2) == 3\nassert add_1(0, 0) == 1\nassert add_1(2, 5) == 8\n```"
ADD_1_TASK = "Write a Python function add_1(a, b) returning a + b + 1, with tests."


def job(**kw) -> AgentJob:  # type: ignore[no-untyped-def]
    kw.setdefault("text", ADD_1_TASK)
    return AgentJob(task_id="t-1", step_id="t-1.1", agent="coder", deadline=time.time() + 60, **kw)


def settings(**kw) -> CoderSettings:  # type: ignore[no-untyped-def]
    return CoderSettings(**{"candidates": 4, "max_candidates": 8, "max_rounds": 2, **kw})


async def run_python(req: ExecRequest) -> ExecResult:
    """A fake sandbox: a plain subprocess, no isolation (unit tests run trusted snippets only)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", req.code + "\n" + (req.test_code or ""),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    status = "ok" if proc.returncode == 0 else "runtime_error"
    return ExecResult(status=status, exit_code=proc.returncode, stdout=out.decode(), stderr=err.decode())


def scripted(codes: list[str], tests: str = "", later: list[str] | None = None) -> ScriptedEngine:
    """Candidates answer ``codes`` in the order asked, then ``later`` (repairs, new samples);
    the test-writing request answers ``tests``."""
    queue = [*codes, *(later or [])]

    def reply(req: GenerationRequest) -> str:
        if is_tests_request(req.messages):
            return tests
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return ScriptedEngine([reply])


def code_requests(engine: ScriptedEngine) -> list[GenerationRequest]:
    return [r for r in engine.requests if not is_tests_request(r.messages)]


async def test_candidates_are_written_at_once_greedy_first_then_sampled_with_seeds() -> None:
    engine = scripted([ADD_1] * 4, ADD_1_TESTS)
    streamed: list[str] = []

    async def on_token(piece: str) -> None:
        streamed.append(piece)

    result = await CodeSolver(engine, run_python, settings(), on_token=on_token).solve(job())
    reqs = code_requests(engine)
    assert [r.temperature for r in reqs] == [0.0, 0.8, 0.8, 0.8]
    assert reqs[0].seed is None and len({r.seed for r in reqs[1:]}) == 3
    assert len({r.request_id for r in engine.requests}) == 5 and reqs[0].request_id == "t-1"
    assert "".join(streamed) == ADD_1  # only the greedy candidate streams
    assert result.status == "done" and len(result.attempts) == 4


async def test_a_model_test_most_candidates_fail_is_dropped_not_shown() -> None:
    # The add_i case: right code everywhere, the model's own test forgot the "+ 1".
    engine = scripted([ADD_1] * 4, ADD_1_TESTS)
    result = await CodeSolver(engine, run_python, settings()).solve(job())
    assert result.status == "done"
    chosen = next(a for a in result.attempts if a.chosen)
    assert chosen.dropped == ["assert add_1(1, 2) == 3"]
    assert "add_1(1, 2) == 3" not in result.answer and "disputed" not in result.answer.lower()
    assert "passes both tests the model wrote itself; chosen from 4 candidates" in result.answer
    # The task states no example: done, but said to be unverified by the task.
    assert result.unverified and "Unverified by the task" in result.answer
    assert result.tests[0].status == "ok"  # the verdict shown is of the checks that stand


async def test_agreement_picks_the_majority_behaviour_over_the_greedy_answer() -> None:
    engine = scripted([ADD_1_WRONG, ADD_1, ADD_1, ADD_1], ADD_1_TESTS)
    result = await CodeSolver(engine, run_python, settings()).solve(job())
    assert result.status == "done" and "a + b + 1" in (result.code or "")
    assert [a.n for a in result.attempts if a.chosen] == [2]
    # The wrong greedy code passes only the wrong test, which is dropped.
    assert "candidate 2, sampled" in result.answer


async def test_contradictory_model_tests_are_discarded_before_running() -> None:
    pal = "```python\ndef is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n```"
    tests = ('```python\nassert is_palindrome("Was it a car or a cat I saw?") == True\n'
             'assert is_palindrome("Was it a car or a cat I saw?") == False\nassert is_palindrome("ab") == False\n```')
    seen: list[ExecRequest] = []

    async def sandbox(req: ExecRequest) -> ExecResult:
        seen.append(req)
        return await run_python(req)

    engine = scripted([pal] * 4, tests)
    text = "Write a Python function is_palindrome(s) that ignores case and non-alphanumeric characters, with tests."
    result = await CodeSolver(engine, sandbox, settings()).solve(job(text=text))
    assert result.status == "done"
    assert all("car or a cat" not in (r.test_code or "") for r in seen)
    assert 'is_palindrome("ab") == False' in (result.attempts[0].tests)
    assert len(seen) == 1  # four identical programs: one sandbox run


async def test_early_stop_when_the_first_round_is_clean() -> None:
    engine = scripted([ADD_1] * 4, ADD_1_TESTS, later=[ADD_1_CRASH])
    result = await CodeSolver(engine, run_python, settings(max_rounds=3)).solve(job())
    assert len(code_requests(engine)) == 4 and len(result.attempts) == 4


async def test_a_traceback_is_repaired_and_the_repair_shows_it() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4"
    engine = scripted([ADD_1_CRASH] * 2, later=[ADD_1])
    result = await CodeSolver(engine, run_python, settings(candidates=2, max_candidates=4)).solve(job(text=text))
    assert result.status == "done" and not result.unverified
    # The first repair passes the task's check: the evidence decides, the other is stopped.
    assert [(a.origin, a.chosen) for a in result.attempts] == [("greedy", False), ("sampled", False), ("repair of 1", True)]
    repair = code_requests(engine)[2]
    assert "NameError" in repair.messages[-1]["content"] and repair.messages[-2]["role"] == "assistant"


async def test_a_wrong_value_is_never_sent_back_as_a_repair_prompt() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4"
    engine = scripted([ADD_1_WRONG] * 2, later=[ADD_1])
    result = await CodeSolver(engine, run_python, settings(candidates=2, max_candidates=4)).solve(job(text=text))
    later = code_requests(engine)[2:]
    assert later and all(len(r.messages) == 2 for r in later)  # fresh samples, no conversation
    assert all(r.temperature > 0 and r.seed is not None for r in later)
    assert result.status == "done" and next(a for a in result.attempts if a.chosen).origin == "sampled"


async def test_the_best_candidate_seen_is_kept_over_a_worse_repair() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4\nassert add_1(0, 0) == 1\nassert add_1(2, 2) == 5"
    partial = "```python\ndef add_1(a, b):\n    if a == 0:\n        raise ValueError('zero')\n    return a + b + 1\n```"
    engine = scripted([partial], later=["```python\ndef add_1(a, b):\n    return (a + b\n```"])
    result = await CodeSolver(engine, run_python, settings(candidates=1, max_candidates=2)).solve(job(text=text))
    assert len(result.attempts) == 2 and result.attempts[1].origin == "repair of 1"
    assert result.attempts[0].chosen and "raise ValueError" in (result.code or "")
    assert result.status == "failed" and result.error is not None
    assert "passes 2 of the 3 checks from the task" in result.error.message


async def test_the_tasks_own_checks_decide_before_agreement() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4\nassert add_1(0, 0) == 1\nassert add_1(0, 1) == 2"
    engine = scripted([ADD_1_WRONG, ADD_1_WRONG, ADD_1_WRONG, ADD_1])
    result = await CodeSolver(engine, run_python, settings()).solve(job(text=text))
    assert [a.n for a in result.attempts if a.chosen] == [4]
    assert "passes all 3 checks from the task; chosen from 4 candidates" in result.answer
    assert len(engine.requests) == 4  # three checks from the task would be enough: no test-writing


async def test_doctest_and_prose_examples_are_trusted_checks() -> None:
    text = ('def add(a, b):\n    """Add.\n    >>> add(2, 3)\n    5\n\n    For example add(1, 1) should return 2.\n'
            '    add(0, 0) => 0\n    """\n')
    engine = scripted(["```python\ndef add(a, b):\n    return a * b\n```"])
    result = await CodeSolver(engine, run_python, settings(candidates=1, max_rounds=1)).solve(job(text=text))
    assert result.attempts[0].tests.splitlines() == ["assert add(2, 3) == 5", "assert add(1, 1) == 2", "assert add(0, 0) == 0"]
    assert result.status == "failed"


async def test_pytest_style_task_tests_are_called() -> None:
    tests = FileIn(path="test_add.py", content="import math\n\ndef test_add():\n    assert add(2, 2) == 4\n")
    engine = scripted(["```python\ndef add(a, b):\n    return a - b\n```"])
    result = await CodeSolver(engine, run_python, settings(candidates=1, max_rounds=1)).solve(job(text="Write add.", files=[tests]))
    assert result.attempts[0].tests == "test_add()" and result.status == "failed"


async def test_edits_a_given_file_and_returns_a_diff() -> None:
    engine = scripted(["```python\ndef add(a, b):\n    return a + b\n```"], "```python\nassert add(2, 3) == 5\n```")
    original = FileIn(path="calc.py", content="def add(a, b):\n    return a - b\n")
    result = await CodeSolver(engine, run_python, settings()).solve(job(text="Fix add in calc.py.", files=[original]))
    assert result.files[0].path == "calc.py" and "return a + b" in result.files[0].content
    assert "-    return a - b" in result.diff and "+    return a + b" in result.diff
    tests_req = next(r for r in engine.requests if is_tests_request(r.messages))
    assert "def add(a, b): ..." in tests_req.messages[1]["content"]


async def test_cancel_ends_the_step_cancelled() -> None:
    engine = ScriptedEngine([ADD_1], token_delay_s=0.01)
    engine.cancel("t-1")
    result = await CodeSolver(engine, run_python, settings()).solve(job())
    assert result.status == "cancelled"


async def test_a_cancel_seen_by_the_agent_stops_every_candidate() -> None:
    # A candidate that ran to its end would take 1000 s: stopping them is the only way to
    # finish within the bound, however busy the machine (no stopwatch on the cancel).
    engine = ScriptedEngine([ADD_1 + "\n# " + "x" * 400_000], token_delay_s=0.01)
    cancelled: set[str] = set()
    solver = CodeSolver(engine, run_python, settings(), is_cancelled=lambda t: t in cancelled)
    task = asyncio.create_task(solver.solve(job()))
    await until(lambda: engine.stats()["running"], "no candidate started")
    cancelled.add("t-1")
    result = await asyncio.wait_for(task, 120)
    assert result.status == "cancelled"
    assert engine.stats()["running"] == 0


async def test_deadline_ends_the_step_timeout() -> None:
    j = job()
    j.deadline = time.time() - 1
    result = await CodeSolver(ScriptedEngine([ADD_1]), run_python, settings()).solve(j)
    assert result.status == "timeout"


REMOVE_ODD_TASK = "Write a function to remove odd numbers from a given list.\nFor example: assert remove_odd([1,2,3]) == [2]"
REMOVE_ODD = "```python\ndef remove_odd(xs):\n    return [x for x in xs if x % 2 == 0]\n```"
RENAMED = "```python\ndef remove_odd_numbers(xs):\n    return [x for x in xs if x % 2 == 0]\n```"
ALWAYS_RIGHT_TESTS = "```python\nassert remove_odd([]) == []\nassert remove_odd([3]) == []\n```"


async def test_an_mbpp_shaped_example_is_a_check_and_a_renamed_function_fails_it_plainly() -> None:
    engine = scripted([RENAMED], ALWAYS_RIGHT_TESTS)
    result = await CodeSolver(engine, run_python, settings(candidates=1, max_rounds=1)).solve(job(text=REMOVE_ODD_TASK))
    assert result.status == "failed" and result.error is not None
    assert "It does not define `remove_odd`" in result.error.message and "fails the only check from the task" in result.error.message
    assert result.attempts[0].tests.splitlines()[0] == "assert remove_odd([1,2,3]) == [2]"
    engine = scripted([REMOVE_ODD], ALWAYS_RIGHT_TESTS)
    result = await CodeSolver(engine, run_python, settings(candidates=1)).solve(job(text=REMOVE_ODD_TASK))
    assert result.status == "done" and not result.unverified
    assert "passes the only check from the task and passes both tests the model wrote itself" in result.answer


async def test_a_task_without_examples_is_done_but_unverified_and_says_what_passed() -> None:
    engine = scripted([ADD_1], "```python\nassert add_1(0, 0) == 1\nassert add_1(2, 5) == 8\n```")
    result = await CodeSolver(engine, run_python, settings(candidates=1)).solve(job())
    assert result.status == "done" and result.unverified
    assert ("Unverified by the task: it states no example to check the code against, so it passes both tests "
            "the model wrote itself; chosen from 1 candidate") in result.answer


FIZZ_TASK = ("Write a Python function fizzbuzz(n) that returns a list of strings for the numbers 1 to n: 'Fizz' for "
             "multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for multiples of both, the number itself otherwise.")
FIZZ_SHARED_MISTAKE = ("```python\ndef fizzbuzz(n):\n    return ['Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else str(i)"
                       " for i in range(1, n + 1)]\n```")
FIZZ = ("```python\ndef fizzbuzz(n):\n    return ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0"
        " else str(i) for i in range(1, n + 1)]\n```")


async def test_a_check_from_the_tasks_rules_beats_a_mistake_most_candidates_share() -> None:
    tests = ("```python\n# 'FizzBuzz' for multiples of both\nassert fizzbuzz(15)[-1] == 'FizzBuzz'\n"
             "assert fizzbuzz(3) == ['1', '2', 'Fizz']\nassert fizzbuzz(5)[-1] == 'Buzz'\n```")
    engine = scripted([FIZZ_SHARED_MISTAKE, FIZZ_SHARED_MISTAKE, FIZZ_SHARED_MISTAKE, FIZZ], tests)
    result = await CodeSolver(engine, run_python, settings()).solve(job(text=FIZZ_TASK))
    assert result.status == "done" and result.unverified and "i % 15" in (result.code or "")
    assert "passes the only check the model wrote from the task's rules" in result.answer


async def test_the_stated_items_of_a_list_the_model_expects_beat_a_shared_mistake() -> None:
    # What the 1.5B writes for fizzbuzz: the whole list under the task's words. The list holds
    # values it worked out itself ('2', '4'), so the vote drops it; its 'FizzBuzz' item stays.
    full = "['1', '2', 'Fizz', '4', 'Buzz', 'Fizz', '7', '8', 'Fizz', 'Buzz', '11', 'Fizz', '13', '14', 'FizzBuzz']"
    tests = f"```python\n# 'FizzBuzz' for multiples of both, the number itself otherwise\nassert fizzbuzz(15) == {full}\n```"
    engine = scripted([FIZZ_SHARED_MISTAKE, FIZZ_SHARED_MISTAKE, FIZZ_SHARED_MISTAKE, FIZZ], tests)
    result = await CodeSolver(engine, run_python, settings()).solve(job(text=FIZZ_TASK))
    assert result.status == "done" and "i % 15" in (result.code or "")
    assert "assert fizzbuzz(15)[14] == 'FizzBuzz'" in result.answer


async def test_greedy_first_samples_only_while_the_evidence_does_not_decide() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4"
    engine = scripted([ADD_1], "```python\nassert add_1(0, 0) == 1\n```")
    result = await CodeSolver(engine, run_python, CoderSettings(candidates=1)).solve(job(text=text))
    assert result.status == "done" and len(result.attempts) == 1  # the greedy answer passes all: no samples
    assert len(engine.requests) == 2  # it and the tests
    engine = scripted([ADD_1_WRONG], later=[ADD_1])
    result = await CodeSolver(engine, run_python, CoderSettings(candidates=1, early_stop=False)).solve(job(text=text))
    assert result.status == "done" and [a.origin for a in result.attempts] == ["greedy"] + ["sampled"] * 4
    assert next(a for a in result.attempts if a.chosen).n == 2


async def test_the_tests_prompt_shares_the_candidates_prefix() -> None:
    engine = scripted([ADD_1], ADD_1_TESTS)
    await CodeSolver(engine, run_python, settings(candidates=1)).solve(job())
    code, tests = code_requests(engine)[0], next(r for r in engine.requests if is_tests_request(r.messages))
    assert code.messages[0] == tests.messages[0]
    assert tests.messages[1]["content"].startswith(ADD_1_TASK + "\n\n") and code.messages[1]["content"].startswith(ADD_1_TASK + "\n\n")
    assert code.stop and tests.stop  # both end at their block's closing fence


async def test_tests_first_writes_the_tests_before_any_candidate() -> None:
    engine = scripted([ADD_1], "```python\nassert add_1(0, 0) == 1\n```")
    result = await CodeSolver(engine, run_python, settings(candidates=1, tests_first=True)).solve(job())
    assert is_tests_request(engine.requests[0].messages) and not is_tests_request(engine.requests[1].messages)
    assert result.status == "done" and result.unverified and len(result.attempts) == 1


async def test_an_engine_error_while_writing_tests_costs_only_the_tests() -> None:
    from shared.errors import EngineError

    def reply(req: GenerationRequest) -> str:
        if is_tests_request(req.messages):
            raise EngineError("prompt too long")
        return ADD_1

    result = await CodeSolver(ScriptedEngine([reply]), run_python, settings(candidates=1)).solve(job())
    assert result.status == "done" and result.unverified and len(result.attempts) == 1


async def test_each_candidate_is_checked_as_it_ends_and_a_decided_round_stops_the_rest() -> None:
    text = "Write add_1(a, b).\nassert add_1(1, 2) == 4\nassert add_1(0, 0) == 1\nassert add_1(2, 2) == 5"
    long_sample = ADD_1 + "\n# " + "x" * 2000
    engine = scripted([ADD_1, long_sample, long_sample, long_sample])
    engine._delay = 0.005  # noqa: SLF001 - each 4-character piece takes a moment: the samples run long
    runs: list[float] = []

    async def sandbox(req: ExecRequest) -> ExecResult:
        runs.append(time.monotonic())
        return await run_python(req)

    started = time.monotonic()
    result = await CodeSolver(engine, sandbox, settings()).solve(job(text=text))
    assert result.status == "done" and [a.n for a in result.attempts] == [1]
    assert runs and runs[0] - started < 1.0  # the greedy answer was checked long before a sample could end
    assert engine.stats()["running"] == 0  # the samples were stopped


class FullOnce(ScriptedEngine):
    """An engine whose queue is full for the first two asks (other jobs hold its slots)."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.refused = 0

    async def generate(self, request: GenerationRequest, on_token: TokenCallback | None = None) -> GenerationResult:
        if self.refused < 2:
            self.refused += 1
            raise QueueFull("full")
        return await super().generate(request, on_token)


async def test_a_full_engine_queue_is_waited_out() -> None:
    engine = FullOnce([ADD_1])
    result = await CodeSolver(engine, run_python, settings(candidates=2, write_tests=False)).solve(job())
    assert result.status == "done" and engine.refused == 2 and len(result.attempts) == 2


async def test_uses_retrieval_when_the_task_names_a_collection() -> None:
    from shared.contracts import SearchHit, SearchReply

    async def search(req):  # type: ignore[no-untyped-def]
        return SearchReply(collection=req.collection, hits=[
            SearchHit(text="def add_1(a, b): use the + operator", path="docs/add.md", start_line=1, end_line=3, score=0.9),
            SearchHit(text="noise", path="x.md", start_line=1, end_line=1, score=0.01),
        ])

    engine = scripted([ADD_1], ADD_1_TESTS)
    result = await CodeSolver(engine, run_python, settings(), search=search).solve(job(collection="docs"))
    assert result.status == "done"
    assert "[docs/add.md:1-3]" in engine.requests[0].messages[-1]["content"]
    assert [(c.path, c.start_line) for c in result.citations] == [("docs/add.md", 1)]


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


async def test_the_test_writer_stops_after_its_first_complete_asserts() -> None:
    # The 1.5B, asked for 3 to 6 tests of is_prime, went on to is_prime(32) until its cap.
    many = "```python\n# returns a + b + 1\n" + "".join(f"assert add_1({i}, 0) == {i + 1}\n" for i in range(10)) + "```"
    engine = scripted([ADD_1], many)
    result = await CodeSolver(engine, run_python, settings(candidates=1, max_tests=3)).solve(job())
    assert "passes all 3 tests the model wrote itself" in result.answer
    assert "assert add_1(2, 0) == 3" in result.answer and "add_1(3, 0)" not in result.answer
    assert result.status == "done" and result.usage.output_tokens < len(many)


async def test_model_tests_that_call_none_of_the_tasks_functions_are_set_aside() -> None:
    # The 1.5B copied the request's example (largest) as the tests of is_prime.
    tests = "```python\n# returns the largest number\nassert largest([3, 9, 2]) == 9\nassert add_1(0, 0) == 1\n```"
    result = await CodeSolver(scripted([ADD_1], tests), run_python, settings(candidates=1)).solve(job())
    assert result.status == "done" and "passes the only test the model wrote itself" in result.answer
    assert "largest" not in result.answer and result.attempts[0].dropped == ["assert largest([3, 9, 2]) == 9"]


def test_the_tests_request_shows_its_example_as_another_tasks() -> None:
    from services.coder_agent.prompts import enough_tests, tests_request

    req = tests_request(["is_prime"])
    assert "For another task" in req and req.rstrip().endswith("one rule each: call only `is_prime`; do not define it.")
    assert not enough_tests("assert f(1) == 2\nassert f(2) == 3", 2)  # the second line is not complete yet
    assert enough_tests("# x\nassert f(1) == 2\n\nassert f(2) == 3\n", 2) and not enough_tests("assert f(1)\n", 0)
