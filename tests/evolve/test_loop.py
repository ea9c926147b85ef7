"""EvolutionLoop end to end in-process: a scripted model behind the real mutate(), real
scoring subprocesses, an in-memory KV; a crash mid-run and a resume from the records."""

from __future__ import annotations

import asyncio

import pytest

from services.router.evolution.loop import EvolutionLoop
from shared.contracts import EvolveRun, EvolveSpec
from shared.evolve.report import lineage, summary
from shared.evolve.store import RunStore
from shared.llm.base import ScriptedEngine
from tests.evolve.fakes import Crash, FakePorts, MemoryKV

SCORER = "from candidate import f\nprint(f())\n"


def code(body: str) -> str:
    return f"```python\ndef f():\n    {body}\n```"


def make_spec(**kw) -> EvolveSpec:
    base = {"task": "Make f() return a larger number.", "seed": "def f():\n    return 1\n", "scorer": SCORER,
            "generations": 2, "population": 2, "children": 4, "limits": {"score_wall_s": 2, "job_timeout_s": 30}}
    base.update(kw)
    return EvolveSpec.model_validate(base)


async def new_run(spec: EvolveSpec, run_id: str = "evo-test") -> RunStore:
    store = RunStore(MemoryKV())
    assert await store.create_run(EvolveRun(run_id=run_id, spec=spec))
    return store


async def test_run_improves_on_the_seed_and_keeps_failures_with_their_verdicts() -> None:
    engine = ScriptedEngine([
        code("return 3"), code("raise ValueError('boom')"), code("return 'lots'"), code("while True:\n        pass"),
        code("return 7"), code("return 5"), code("# same as before\n    return 3"), code("return 4"),
    ])
    store = await new_run(make_spec())
    ports = FakePorts(engine, score_timeout_s=1)
    run = await EvolutionLoop(store, ports, grace_s=0).run("evo-test")

    assert run.status == "done" and run.generation == 2
    assert run.seed_score == 1.0 and run.best_score == 7.0
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    assert len(programs) == 1 + 8
    verdicts = sorted(p.verdict for p in programs.values() if p.score is None)
    assert verdicts == ["no_number", "runtime_error", "timeout"]
    assert "ValueError: boom" in next(p.detail for p in programs.values() if p.verdict == "runtime_error")
    # Generation 2's prompts showed parents with their scores and generation 1's failures.
    gen2_prompts = [r.messages[-1]["content"] for r in engine.requests[4:]]
    assert all("scores 3" in t for t in gen2_prompts)  # the elite of generation 1 is always shown
    assert any("runtime_error" in t or "no_number" in t or "timeout" in t for t in gen2_prompts)
    # Survivors: the best first; the duplicate of "return 3" did not take a second place.
    gen2 = await store.get_gen("evo-test", 2)
    assert gen2 is not None and gen2.population[0] == run.best_id
    best_codes = [programs[p].code_hash for p in gen2.population]
    assert len(set(best_codes)) == len(best_codes)
    chain = lineage(programs, run.best_id)
    assert chain[0].score == 7.0 and chain[-1].program_id == "seed"
    report = summary(run, await store.generations("evo-test", 2), list(programs.values()))
    assert report["seed_score"] == 1.0 and report["best_score"] == 7.0 and "return 7" in report["best_program"]
    assert [pt["best_score"] for pt in report["curve"]] == [1.0, 3.0, 7.0]


async def test_a_seed_without_score_fails_the_run() -> None:
    store = await new_run(make_spec(seed="def f():\n    return 'one'\n"))
    ports = FakePorts(ScriptedEngine([code("return 2")]))
    run = await EvolutionLoop(store, ports, grace_s=0).run("evo-test")
    assert run.status == "failed" and run.error is not None and run.error.code == "seed_unscored"
    assert "no_number" in run.error.message
    assert ports.published == []


async def test_candidates_that_never_come_back_are_recorded_lost() -> None:
    store = await new_run(make_spec(generations=1, children=2, limits={"score_wall_s": 2, "job_timeout_s": 0.5}))

    class Silent(FakePorts):
        async def publish_jobs(self, jobs):  # the coder-agents never answer
            self.published += [j.step_id for j in jobs]

    run = await EvolutionLoop(store, Silent(ScriptedEngine(["x"])), grace_s=0).run("evo-test")
    assert run.status == "done" and run.best_id == "seed"
    lost = [p for p in await store.programs("evo-test") if p.verdict == "lost"]
    assert len(lost) == 2


async def test_resume_after_a_crash_mid_generation_redoes_nothing() -> None:
    replies = [code(f"return {n}") for n in (2, 3, 4, 6, 5, 8, 9, 7, 10)]
    spec = make_spec(generations=3, children=3)
    store = await new_run(spec)
    stream: asyncio.Queue = asyncio.Queue()  # the JOBS stream outlives the router
    engine = ScriptedEngine(replies)
    first = FakePorts(engine, crash_after=4, queue=stream)  # dies after the first result of generation 2
    with pytest.raises(Crash):
        await EvolutionLoop(store, first, grace_s=0).run("evo-test")
    mid = await store.get_run("evo-test")
    assert mid is not None and mid.status == "running" and mid.generation == 1
    gen1_before = await store.get_gen("evo-test", 1)

    second = FakePorts(engine, queue=stream)
    run = await EvolutionLoop(store, second, grace_s=0).run("evo-test")
    assert run.status == "done" and run.generation == 3
    assert run.best_score == 10.0
    # Generation 1 was not redone, generation 2's jobs were not asked again, and each
    # candidate was written by the model exactly once.
    assert await store.get_gen("evo-test", 1) == gen1_before
    assert not any(".g1." in s or ".g2." in s for s in second.published)
    everything = first.published + second.published
    assert len(everything) == len(set(everything)) == 9
    assert len(engine.requests) == 9
    programs = await store.programs("evo-test")
    assert sorted(p.program_id for p in programs if p.generation == 2) == ["g2-c1", "g2-c2", "g2-c3"]
    assert all(p.verdict == "ok" for p in programs)
    gen2 = await store.get_gen("evo-test", 2)
    assert gen2 is not None and gen2.trace_ids == ["trace-2", "trace-2"]  # one per process that worked on it
