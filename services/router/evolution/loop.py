"""``EvolutionLoop``: one run's generations, over ports (NATS in the router, fakes in tests).

Per generation ``n``:

1. plan: one job per child — a binary-tournament parent, the best other program as
   inspiration, the previous generation's failures, a hint (``prompt``). The plan is a
   pure function of the stored records and a seeded RNG, so a resumed generation plans
   the very same jobs (same step ids, deduplicated by the JOBS stream);
2. the generation record (jobs, deadline) is written, then the jobs are published to
   coder-agent copies (``mode="mutate"``), then ``published`` is set;
3. each candidate that comes back is stored ("pending"), acked, and scored in
   code-sandbox (bounded concurrency); its program record then holds the score/verdict;
4. candidates still missing at the deadline (+ grace) are recorded as "lost";
5. survivors are chosen (``selection``), the generation record closes, and the run's head
   record moves to generation ``n``.

Crash anywhere and ``run()`` on the same records continues: a closed generation is never
redone, published jobs are not re-asked, pending candidates are scored again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from services.router.evolution.prompt import hint_for, mutation_prompt
from services.router.evolution.scoring import read_score, scoring_request
from services.router.evolution.selection import normalized_hash, pick_parents, select_survivors
from shared.contracts import (
    AgentJob,
    ErrorInfo,
    EvolveGeneration,
    EvolveProgram,
    EvolveRun,
    ExecRequest,
    ExecResult,
    StepResult,
)
from shared.errors import SyndicateError
from shared.evolve.store import RunStore

log = logging.getLogger(__name__)

SEED_ID = "seed"
SCORE_RETRIES = 3  # a sandbox that does not answer is retried before the candidate counts as unscored


@dataclass
class Delivery:
    """One candidate result from the bus and how to acknowledge it."""

    result: StepResult
    ack: Callable[[], Awaitable[None]]


class LoopPorts(Protocol):
    async def publish_jobs(self, jobs: list[AgentJob]) -> None: ...

    async def fetch_results(self, max_wait_s: float) -> list[Delivery]: ...

    async def run_scoring(self, req: ExecRequest, traceparent: str = "") -> ExecResult: ...

    def generation_span(self, run_id: str, n: int) -> AbstractContextManager[str]: ...

    async def progress(self, run: EvolveRun, text: str) -> None: ...


def step_id(run_id: str, n: int, child: int) -> str:
    return f"{run_id}.g{n}.c{child}"


def program_id(step: str) -> str:
    """``<run>.g3.c1`` -> ``g3-c1``."""
    gen, child = step.rsplit(".", 2)[-2:]
    return f"{gen}-{child}"


class EvolutionLoop:
    def __init__(self, store: RunStore, ports: LoopPorts, *, grace_s: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ports = ports
        self.grace_s = grace_s
        self.clock = clock
        self._lock = asyncio.Lock()

    async def run(self, run_id: str) -> EvolveRun:
        """Drive the run from wherever its records stand to its last generation."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise KeyError(run_id)
        if not run.population:
            run = await self._score_seed(run)
        while run.status == "running" and run.generation < run.spec.generations:
            run = await self._generation(run, run.generation + 1)

        def finish(r: EvolveRun) -> bool:
            if r.status != "running" or r.generation < r.spec.generations:
                return False
            r.status = "done"
            return True

        out = await self.store.mutate_run(run_id, finish)
        assert out is not None
        if out.status == "done":
            await self.ports.progress(out, f"done: best {out.best_score:.6g} (seed {out.seed_score:.6g})")
        return out

    # --- seed ---------------------------------------------------------------------------
    async def _score_seed(self, run: EvolveRun) -> EvolveRun:
        seed = await self.store.get_prog(run.run_id, SEED_ID)
        if seed is None or seed.verdict == "pending":
            with self.ports.generation_span(run.run_id, 0):
                seed = EvolveProgram(run_id=run.run_id, program_id=SEED_ID, generation=0, code=run.spec.seed,
                                     code_hash=normalized_hash(run.spec.seed))
                await self._score(run, seed)
                await self.store.put_prog(seed)
        if seed.score is None:
            err = ErrorInfo(code="seed_unscored", message=f"the seed program earns no score ({seed.verdict}): {seed.detail[-500:]}")

            def fail(r: EvolveRun) -> bool:
                r.status, r.error = "failed", err
                return True

            out = await self.store.mutate_run(run.run_id, fail)
            assert out is not None
            await self.ports.progress(out, err.message)
            return out
        score = seed.score

        def seeded(r: EvolveRun) -> bool:
            r.population, r.seed_score, r.best_id, r.best_score = [SEED_ID], score, SEED_ID, score
            return True

        out = await self.store.mutate_run(run.run_id, seeded)
        assert out is not None
        await self.ports.progress(out, f"seed scores {score:.6g}")
        return out

    # --- one generation -------------------------------------------------------------------
    async def _population(self, run: EvolveRun) -> list[EvolveProgram]:
        progs = [await self.store.get_prog(run.run_id, pid) for pid in run.population]
        return [p for p in progs if p is not None]

    async def _failures(self, run: EvolveRun, n: int) -> list[EvolveProgram]:
        """Unscored candidates of the previous generation (what the prompts warn about)."""
        prev = await self.store.get_gen(run.run_id, n - 1) if n > 1 else None
        out = []
        for step in prev.jobs if prev else []:
            p = await self.store.get_prog(run.run_id, program_id(step))
            if p is not None and p.score is None and p.verdict not in ("lost", "pending"):
                out.append(p)
        return out

    async def plan(self, run: EvolveRun, population: list[EvolveProgram], n: int,
                   deadline: float) -> tuple[list[AgentJob], dict[str, list[str]]]:
        """The generation's jobs (deterministic given the stored records)."""
        spec = run.spec
        rng = random.Random(f"{spec.rng_seed}:{run.run_id}:{n}")
        failures = await self._failures(run, n)
        rng.shuffle(failures)
        jobs, parents = [], {}
        for child in range(1, (spec.children or spec.population) + 1):
            parent, inspiration = pick_parents(population, rng)
            sid = step_id(run.run_id, n, child)
            k = child % len(failures) if failures else 0
            text = mutation_prompt(spec, parent, inspiration, failures[k:] + failures[:k], hint_for(spec, n, child))
            jobs.append(AgentJob(
                task_id=run.run_id, step_id=sid, agent="coder", text=text, deadline=deadline,
                max_tokens=spec.limits.max_tokens, mode="mutate", temperature=spec.limits.temperature,
            ))
            parents[sid] = [parent.program_id] + ([inspiration.program_id] if inspiration else [])
        return jobs, parents

    async def _generation(self, run: EvolveRun, n: int) -> EvolveRun:
        population = await self._population(run)
        with self.ports.generation_span(run.run_id, n) as trace_id:
            gen = await self.store.get_gen(run.run_id, n)
            jobs: list[AgentJob] | None = None
            if gen is None:
                gen = EvolveGeneration(run_id=run.run_id, n=n, deadline=self.clock() + run.spec.limits.job_timeout_s)
                jobs, gen.parents = await self.plan(run, population, n, gen.deadline)
                gen.jobs = [j.step_id for j in jobs]
            if trace_id:
                gen.trace_ids.append(trace_id)
            await self.store.put_gen(gen)
            if not gen.published:
                if jobs is None:
                    jobs, _ = await self.plan(run, population, n, gen.deadline)
                await self.ports.publish_jobs(jobs)
                gen.published = True
                await self.store.put_gen(gen)
            await self.ports.progress(run, f"generation {n}: {len(gen.jobs)} candidates asked")
            children = await self._collect(run, gen)
            survivors = select_survivors(population + children, run.spec.population)
            gen.population = [p.program_id for p in survivors]
            gen.best_id, gen.best_score = survivors[0].program_id, survivors[0].score
            gen.status, gen.finished_at = "done", self.clock()
            await self.store.put_gen(gen)
        best = survivors[0]

        def advance(r: EvolveRun) -> bool:
            if r.generation >= n:
                return False
            r.generation, r.population = n, gen.population
            r.best_id, r.best_score = best.program_id, best.score
            return True

        out = await self.store.mutate_run(run.run_id, advance)
        assert out is not None
        await self.ports.progress(out, f"generation {n} done: best {best.score:.6g} ({best.program_id})")
        return out

    async def _collect(self, run: EvolveRun, gen: EvolveGeneration) -> list[EvolveProgram]:
        """Gather, store and score the generation's candidates until all are in or the
        deadline (+ grace) passes."""
        children: dict[str, EvolveProgram] = {}
        scoring: set[asyncio.Task[None]] = set()
        sem = asyncio.Semaphore(run.spec.limits.score_concurrency)
        for step in gen.jobs:
            prog = await self.store.get_prog(run.run_id, program_id(step))
            if prog is not None:
                children[step] = prog
                if prog.verdict == "pending":  # stored but not scored before a crash
                    scoring.add(asyncio.create_task(self._score_and_store(run, gen, prog, sem)))
        waiting = [s for s in gen.jobs if s not in children]
        final = [p for p in children.values() if p.verdict != "pending"]  # counted afresh after a restart
        gen.scored, gen.failed = sum(p.score is not None for p in final), sum(p.score is None for p in final)
        end = gen.deadline + self.grace_s
        try:
            while waiting and self.clock() < end:
                for d in await self.ports.fetch_results(max_wait_s=max(0.05, min(1.0, end - self.clock()))):
                    step = d.result.step_id
                    if step not in waiting:  # a duplicate, or a result of an earlier generation
                        await d.ack()
                        continue
                    waiting.remove(step)
                    prog = self._candidate(run, gen, d.result)
                    children[step] = prog
                    await self.store.put_prog(prog)  # stored before the ack: a crash now loses nothing
                    await d.ack()
                    if prog.verdict == "pending":
                        scoring.add(asyncio.create_task(self._score_and_store(run, gen, prog, sem)))
                    else:
                        await self._count(gen, prog)
                for t in [t for t in scoring if t.done()]:
                    scoring.discard(t)
                    t.result()  # surface a failure
            if scoring:
                await asyncio.gather(*scoring)
        finally:
            for t in scoring:
                t.cancel()
        for step in waiting:
            prog = EvolveProgram(run_id=run.run_id, program_id=program_id(step), generation=gen.n,
                                 parents=gen.parents.get(step, []), verdict="lost",
                                 detail="no candidate came back before the generation's deadline")
            children[step] = prog
            await self.store.put_prog(prog)
            await self._count(gen, prog)
        return [children[s] for s in gen.jobs if s in children]

    def _candidate(self, run: EvolveRun, gen: EvolveGeneration, res: StepResult) -> EvolveProgram:
        prog = EvolveProgram(run_id=run.run_id, program_id=program_id(res.step_id), generation=gen.n,
                             parents=gen.parents.get(res.step_id, []), code=res.code or "")
        if res.status == "done" and prog.code.strip():
            prog.code_hash, prog.verdict = normalized_hash(prog.code), "pending"
        else:
            prog.verdict = "no_code" if res.status in ("done", "failed") else res.status
            prog.detail = res.error.message if res.error else "the coder returned no program"
        return prog

    async def _score_and_store(self, run: EvolveRun, gen: EvolveGeneration, prog: EvolveProgram,
                               sem: asyncio.Semaphore) -> None:
        async with sem:
            await self._score(run, prog)
        await self.store.put_prog(prog)
        await self._count(gen, prog)

    async def _score(self, run: EvolveRun, prog: EvolveProgram) -> None:
        """Score ``prog`` in place (score, verdict, detail, wall_s)."""
        req = scoring_request(run.spec, prog.code, run.run_id)
        for attempt in range(1, SCORE_RETRIES + 1):
            try:
                res = await self.ports.run_scoring(req)
                break
            except SyndicateError as exc:
                if attempt == SCORE_RETRIES:
                    prog.score, prog.verdict, prog.detail = None, "internal_error", f"code-sandbox: {exc.message}"
                    return
                await asyncio.sleep(attempt)
        prog.score, prog.verdict, prog.detail = read_score(res)
        prog.wall_s = res.wall_s

    async def _count(self, gen: EvolveGeneration, prog: EvolveProgram) -> None:
        """Live counters of the open generation (the CLI shows them)."""
        async with self._lock:
            if prog.score is not None:
                gen.scored += 1
            else:
                gen.failed += 1
            with contextlib.suppress(Exception):
                await self.store.put_gen(gen)
