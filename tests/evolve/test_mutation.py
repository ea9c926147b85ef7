"""coder-agent's mutate jobs: one parseable program back, seeded sampling, one repair for
code that does not parse."""

from __future__ import annotations

import time

from services.coder_agent.mutation import mutate
from shared.contracts import AgentJob
from shared.evolve.candidate import sample_seed as job_seed
from shared.llm.base import ScriptedEngine


def job(step: str = "evo-1.g1.c1", **kw) -> AgentJob:
    return AgentJob(task_id="evo-1", step_id=step, agent="coder", text="improve it", deadline=time.time() + 30,
                    mode="mutate", **kw)


async def test_returns_the_program_without_scaffolding() -> None:
    engine = ScriptedEngine(["Here:\n```python\ndef f():\n    return 3\n\nprint(f())\n```\nDone."])
    res = await mutate(engine, job(temperature=0.7))
    assert res.status == "done"
    assert res.code == "def f():\n    return 3\n"
    req = engine.requests[0]
    assert req.temperature == 0.7 and req.seed == job_seed("evo-1.g1.c1")
    assert "improve it" in req.messages[-1]["content"]


async def test_example_usage_is_dropped_but_constants_stay() -> None:
    answer = ("```python\nLIMIT = max(3, 4)\n\ndef pack(sizes, capacity):\n    return [[s] for s in sizes]\n\n"
              "# Example usage\nbins = pack([3, 4], 10)\nprint(bins)\n```")
    res = await mutate(ScriptedEngine([answer]), job())
    assert res.code == "LIMIT = max(3, 4)\n\ndef pack(sizes, capacity):\n    return [[s] for s in sizes]\n"


async def test_code_that_does_not_parse_gets_one_repair() -> None:
    engine = ScriptedEngine(["```python\ndef f(:\n    return 3\n```", "```python\ndef f():\n    return 4\n```"])
    res = await mutate(engine, job())
    assert res.status == "done" and "return 4" in (res.code or "")
    assert [a.passed for a in res.attempts] == [False, True]
    assert "SyntaxError" in engine.requests[1].messages[-1]["content"]


async def test_no_parseable_program_fails_the_job() -> None:
    engine = ScriptedEngine(["```python\ndef f(:\n```"])
    res = await mutate(engine, job())
    assert res.status == "failed" and res.error is not None and res.error.code == "no_code"


def test_seeds_differ_between_candidates() -> None:
    assert job_seed("evo-1.g1.c1") != job_seed("evo-1.g1.c2")
