"""IslandEngine (mode "islands") end to end in-process: scripted models behind the real
mutate(), real scoring subprocesses through the stdin stage protocol, an in-memory KV.
Cascade, duplicates, the budget stops, lost candidates, validation and a crash + resume."""

from __future__ import annotations

import asyncio
import re

from services.router.evolution.engine import IslandEngine
from shared.contracts import EvolveRun, EvolveSpec
from shared.evolve.report import summary
from shared.evolve.store import RunStore
from shared.llm.base import GenerationRequest, ScriptedEngine
from tests.evolve.fakes import Crash, FakePorts, MemoryKV

# f(x) is scored on a few inputs per stage; validation prefers values near 4x (so a
# program can win training and lose validation); "fingerprint" is the values themselves.
SCORER = """
import hashlib, json, sys
from candidate import f
req = json.loads(sys.stdin.read() or "{}")
stage = req.get("stage", "train")
xs = {"quick": [1], "train": [1, 2, 3], "validation": [2, 3], "test": [5, 6]}[stage]
vals = [float(f(x)) for x in xs]
score = sum(vals) / len(vals)
if stage == "validation":
    score = -sum(abs(v - 4 * x) for v, x in zip(vals, xs))
print("values", vals)
print(json.dumps({"score": score, "signature": vals, "metrics": {"mean": sum(vals) / len(vals)},
                  "fingerprint": hashlib.sha256(repr(vals).encode()).hexdigest()[:12]}))
"""
SEED = "import math\n\n\ndef f(x):\n    return x\n"


def answer(body: str, version: int = 1) -> str:
    return f"Here:\n```python\ndef f_v{version}(x):\n    {body}\n```"


FULL_CASCADE = {"stages": ["quick", "train"], "validation": "validation", "test": "test", "metric": "mean",
                "tolerance": 0.5}


def make_spec(**kw) -> EvolveSpec:
    base = {
        "task": "Make f(x) large.", "seed": SEED, "scorer": SCORER, "function": "f", "samples": 6, "concurrency": 2,
        "cascade": {"stages": ["train"]}, "database": {"islands": 2, "reset_every": 1000, "samples_per_prompt": 1},
        "limits": {"score_wall_s": 5, "job_timeout_s": 30},
    }
    for k, v in kw.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return EvolveSpec.model_validate(base)


async def new_run(spec: EvolveSpec, run_id: str = "evo-test") -> RunStore:
    store = RunStore(MemoryKV())
    assert await store.create_run(EvolveRun(run_id=run_id, spec=spec))
    return store


def engine_for(store: RunStore, ports: FakePorts, **kw) -> IslandEngine:
    return IslandEngine(store, ports, poll_s=0.05, **kw)


async def test_steady_state_run_climbs_and_keeps_every_verdict() -> None:
    engine = ScriptedEngine([
        answer("return 3 * x"),
        answer("raise ValueError('boom')"),
        answer("return x  # the seed again, other layout"),  # same code as the seed: never scored
        answer("return x + 0 * math.pi"),  # other code, same values as the seed: a behaviour duplicate
        answer("return 6 * x"),
        "no code at all",
    ])
    store = await new_run(make_spec(concurrency=1, cascade=FULL_CASCADE,
                                    baselines={"double": "def f(x):\n    return 2 * x\n"}))
    ports = FakePorts(engine, score_timeout_s=5)
    run = await engine_for(store, ports, backlog=0).run("evo-test")  # one at a time: a reproducible order

    assert run.status == "done" and run.phase == "ended"
    assert run.asked == 6 and run.answered == 6
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    verdicts = {pid: p.verdict for pid, p in programs.items() if p.sample}
    assert sorted(verdicts.values()) == ["duplicate", "duplicate", "no_code", "ok", "ok", "runtime_error"]
    assert programs["s3"].duplicate_of == "seed" and programs["s4"].duplicate_of == "seed"
    assert "ValueError: boom" in programs["s2"].detail
    # The code duplicate never ran; the behaviour duplicate ran only the quick stage.
    assert sum("0 * math.pi" in code for code in ports.scored) == 1
    # Training best is 6x; validation (near 4x) prefers 3x: the final program is s1.
    assert run.best_score == 12.0 and programs[run.best_id].function.strip().endswith("return 6 * x")
    assert run.final_id == "s1" and programs["s1"].validation == -5.0
    # Test stage: the final program, the training best, the seed and the baseline.
    assert programs["s1"].test == {"score": 16.5, "mean": 16.5}
    assert programs["seed"].test["mean"] == 5.5 and programs["base-double"].test["mean"] == 11.0
    # Candidates are whole programs: the seed's skeleton + the evolved function, renamed.
    assert programs["s1"].code.startswith("import math") and "def f(x):" in programs["s1"].code
    # Prompts: versions in ascending score as f_v0.., asking for the next version.
    later = [r.messages[-1]["content"] for r in engine.requests[4:]]
    assert any("def f_v0(x)" in t and "def f_v1(x)" in t and "Write `f_v2`" in t for t in later), later
    first = engine.requests[0].messages[-1]["content"]
    assert "def f_v0(x):" in first and "Write `f_v1`" in first and "import math" in first
    # A failure of the island is shown to its next prompt.
    assert any("ValueError: boom" in t or "behaved exactly like" in t for t in later)

    data = summary(run, [], list(programs.values()), islands=await store.islands("evo-test", 2))
    assert data["samples"] == 6 and data["best_program"].rstrip().endswith("return 3 * x")
    assert data["test_mean"] == 16.5 and data["seed_mean"] == 5.5 and data["double_mean"] == 11.0
    assert data["valid_fraction"] == round(4 / 6, 4)  # scored at some stage: s1, s4, s5 and ... s2 crashed
    assert [p["program_id"] for p in data["lineage"]] == ["s1", "seed"]


async def test_cascade_rejects_weak_candidates_before_the_expensive_stage() -> None:
    engine = ScriptedEngine([answer("return -100 * x"), answer("return 2 * x"), answer("return x - 1")])
    store = await new_run(make_spec(samples=3, cascade={"stages": ["quick", "train"], "tolerance": 0.2},
                                    database={"islands": 1, "samples_per_prompt": 1}))
    ports = FakePorts(engine)
    run = await engine_for(store, ports).run("evo-test")
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    assert programs["s1"].verdict == "rejected" and programs["s1"].stage_scores == {"quick": -100.0}
    assert "island's best there is 1" in programs["s1"].detail
    assert programs["s2"].verdict == "ok" and programs["s3"].verdict == "rejected"  # quick 0 < 2 - 0.2 * 2
    # Per candidate: quick for all three, train only for s2.
    assert ports.stages.count("train") == 2  # the seed and s2
    assert run.valid == 3


async def test_a_sample_budget_stops_asking_and_old_specs_get_one() -> None:
    engine = ScriptedEngine([lambda req: answer(f"return {len(engine.requests) + 1} * x")])
    store = await new_run(make_spec(samples=None, generations=2, children=3, concurrency=4,
                                    database={"samples_per_prompt": 2}))
    run = await engine_for(store, FakePorts(engine)).run("evo-test")
    assert run.asked == 6 and len(engine.requests) == 6  # generations x children
    # Two samples per prompt: the pairs share their prompt (and island), seeds differ.
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    for a, b in (("s1", "s2"), ("s3", "s4"), ("s5", "s6")):
        assert programs[a].prompt == programs[b].prompt and programs[a].island == programs[b].island
    assert programs["s1"].island != programs["s3"].island
    assert len({r.seed for r in engine.requests}) == 6


async def test_a_time_budget_stops_asking_and_cancels_the_jobs_out() -> None:
    engine = ScriptedEngine([answer("return 2 * x")])
    store = await new_run(make_spec(samples=None, minutes=1.0, concurrency=3))
    ports = FakePorts(engine, drop={"s2", "s3"})  # these never come back
    # Active time moves 20 s with each job published: the third job spends the minute.
    run = await engine_for(store, ports, monotonic=lambda: 20.0 * len(ports.published)).run("evo-test")
    assert run.status == "done" and run.active_s >= 60
    assert run.asked == 3
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    assert programs["s1"].verdict == "ok"
    assert [programs[s].verdict for s in ("s2", "s3")] == ["lost", "lost"]
    assert all("time budget" in programs[s].detail for s in ("s2", "s3"))
    assert ports.cancels == ["evo-test"]  # the coders stop generating them


async def test_a_lost_candidate_frees_its_slot_and_the_run_goes_on() -> None:
    engine = ScriptedEngine([answer("return 2 * x"), answer("return 3 * x"), answer("return 4 * x")])
    store = await new_run(make_spec(samples=3, concurrency=1, limits={"job_timeout_s": 0.3}))
    ports = FakePorts(engine, drop={"s1"})
    run = await engine_for(store, ports).run("evo-test")
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    assert programs["s1"].verdict == "lost" and "deadline" in programs["s1"].detail
    assert programs["s2"].verdict == "ok" and programs["s3"].verdict == "ok"
    assert run.verdicts == {"lost": 1, "ok": 2} and run.answered == 3


async def test_a_crashed_run_resumes_from_its_records_without_asking_twice() -> None:
    def reply(req: GenerationRequest) -> str:
        best = max(int(m) for m in re.findall(r"return (\d+) \* x", req.messages[-1]["content"]) or ["1"])
        return answer(f"return {best + 1} * x", int(re.search(r"Write `f_v(\d+)`", req.messages[-1]["content"]).group(1)))

    store = await new_run(make_spec(samples=8, concurrency=2))
    queue: asyncio.Queue = asyncio.Queue()
    first = FakePorts(ScriptedEngine([reply]), crash_after=3, queue=queue)
    try:
        await engine_for(store, first).run("evo-test")
        raise AssertionError("the fake router should have crashed")
    except Crash:
        pass
    mid = await store.get_run("evo-test")
    asked_before = [p for p in await store.programs("evo-test") if p.sample > 0]
    assert mid is not None and mid.status == "running" and 0 < len(asked_before) < 8
    second = FakePorts(ScriptedEngine([reply]), queue=queue)  # answers that waited in the "durable consumer"
    run = await engine_for(store, second).run("evo-test")
    assert run.status == "done" and run.asked == 8
    asked = first.published + second.published
    assert len(set(asked)) == 8  # every sample asked once (a re-publish would be deduplicated anyway)
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    assert all(p.verdict not in ("asked", "pending") for p in programs.values())
    assert run.best_score is not None and run.best_score > 2.0
    # The head's counters were rebuilt from the records.
    assert run.answered == 8 and sum(run.verdicts.values()) == 8


async def test_a_seed_without_the_evolved_function_fails_the_run_clearly() -> None:
    store = await new_run(make_spec(seed="def g(x):\n    return x\n"))
    run = await engine_for(store, FakePorts(ScriptedEngine(["x"]))).run("evo-test")
    assert run.status == "failed" and run.error is not None
    assert "defines no function f()" in run.error.message


async def test_samples_go_to_the_spec_models_by_weight_and_pairs_stay_on_one_model() -> None:
    engine = ScriptedEngine([lambda req: answer(f"return {len(engine.requests) + 1} * x")])
    models = [{"name": "", "weight": 1}, {"name": "small-model", "weight": 3, "temperature": 0.4}]
    store = await new_run(make_spec(samples=8, concurrency=8, models=models, database={"samples_per_prompt": 2}))
    ports = FakePorts(engine)
    run = await engine_for(store, ports).run("evo-test")
    assert run.asked == 8
    programs = {p.program_id: p for p in await store.programs("evo-test")}
    named = {step.rsplit(".", 1)[-1] for step, model in ports.asked_models if model == "small-model"}
    assert named and len(named) < 8  # both kinds took samples
    assert {p.program_id for p in programs.values() if p.asked_model == "small-model"} == named
    for a, b in (("s1", "s2"), ("s3", "s4"), ("s5", "s6"), ("s7", "s8")):
        assert programs[a].asked_model == programs[b].asked_model  # a prompt's samples share one engine
    temps = {r.temperature for r in engine.requests}
    assert 0.4 in temps
