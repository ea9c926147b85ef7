"""``IslandEngine``: mode "islands" — steady-state, asynchronous evolution over ports
(NATS in the router, fakes in unit tests).

There is no generation barrier. The engine keeps ``concurrency`` candidate jobs in flight
(by default the coder-agent slots it sees in health replies, plus one waiting job per
copy), and whenever one comes back it is scored and the next job goes out:

1. **seed**: the seed program is scored at every cascade stage (and validation) and
   founds every island;
2. **ask** sample n: the islands take turns; k programs of the island by cluster
   (``database``) become ``<function>_v0 .. _v{k-1}``, asked ``samples_per_prompt`` times
   in a row (they differ by sampling seed); the record (verdict "asked", prompt, parents, deadline)
   is written before the job goes to the JOBS stream (``mode="mutate"``) and flagged
   ``published`` after;
3. **answer**: the candidate's evolved function is cut out of the answer and put back
   into the seed's skeleton; same normalised code as any earlier program → "duplicate";
   else "pending", stored before the ack;
4. **cascade**: the stages run cheapest first; after the first, a candidate whose
   fingerprint (placements) equals an earlier program's is a "duplicate"; one that falls
   more than ``tolerance`` short of its island's best at a stage is "rejected"; one that
   passes all is "ok" and joins its island's cluster for its signature;
5. **validation**: a program that becomes its island's best or enters the run's top
   ``validate_top`` by training score is scored on the validation stage; the final program
   is the best validation among them (the training score alone would pick overfits);
6. **budget**: asking stops at ``samples`` asked or ``minutes`` of active time; after a
   sample budget the engine waits for the jobs out, after a time budget it cancels them;
7. **finish**: the final program, the best training program, the seed and the spec's
   baselines are scored on the held-out test stage; the head record says "done".

Crash anywhere and ``run()`` on the same records continues: the islands and counters are
rebuilt from the records, unpublished jobs are published again (deduplicated by step id),
results that arrived meanwhile wait in the durable consumer, stored candidates without a
score are scored again, and a job past its deadline is "lost".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from services.router.evolution.database import IslandDatabase
from services.router.evolution.judging import SEED_ID, Judging
from services.router.evolution.loop import Delivery
from services.router.evolution.program import (
    NoFunction,
    Split,
    assemble,
    check_defines,
    evolved_from_answer,
    split_program,
)
from services.router.evolution.prompt import versions_prompt
from services.router.evolution.selection import normalized_hash
from shared.contracts import (
    AgentJob,
    ErrorInfo,
    EvolveModel,
    EvolveProgram,
    EvolveRun,
    ExecRequest,
    ExecResult,
    StepResult,
)

log = logging.getLogger(__name__)

FAILED = frozenset({"runtime_error", "timeout", "memory_limit", "output_limit", "no_number", "no_code", "killed"})
DEFAULT_CAPACITY = 4  # jobs in flight for a model when nothing says more
HEAD_EVERY_S = 2.0  # counters reach the head record at most this often (and at every event)
CAPACITY_EVERY_S = 30.0  # how often the number of coder slots is looked up again
FAILURE_WINDOW = 12  # a failure older than this many samples of its island is not shown any more


class EnginePorts(Protocol):
    async def publish_jobs(self, jobs: list[AgentJob]) -> None: ...

    async def fetch_results(self, max_wait_s: float) -> list[Delivery]: ...

    async def run_scoring(self, req: ExecRequest, traceparent: str = "") -> ExecResult: ...

    async def ask_model(self, job: AgentJob, model: str) -> None: ...

    async def capacity(self, models: list[str]) -> dict[str, int]: ...

    async def cancel_jobs(self, run_id: str) -> None: ...

    def sample_span(self, run_id: str, sample: int) -> AbstractContextManager[str]: ...

    async def progress(self, run: EvolveRun, text: str) -> None: ...


def step_id(run_id: str, sample: int) -> str:
    return f"{run_id}.s{sample}"


class IslandEngine(Judging):
    def __init__(self, store, ports: EnginePorts, *, clock: Callable[[], float] = time.time,  # type: ignore[no-untyped-def]
                 monotonic: Callable[[], float] = time.monotonic, poll_s: float = 1.0, backlog: int | None = None) -> None:
        self.store = store
        self.ports = ports
        self.clock = clock
        self.monotonic = monotonic
        self.poll_s = poll_s
        # Candidates waiting for (or in) scoring beyond which no new job goes out: when the
        # sandbox falls behind, answers must not pile up (None: limits.score_concurrency).
        self.backlog = backlog
        self.run_id = ""
        self.programs: dict[str, EvolveProgram] = {}
        self.outstanding: dict[str, EvolveProgram] = {}
        self.hashes: dict[str, str] = {}
        self.fingerprints: dict[str, str] = {}
        self.scoring: set[asyncio.Task[None]] = set()
        self._head_at = 0.0
        self._drive_start = 0.0
        self._active_base = 0.0
        self._capacity: dict[str, int] = {}
        self._capacity_at = -math.inf
        self._lock = asyncio.Lock()

    # --- the run --------------------------------------------------------------------------
    async def run(self, run_id: str) -> EvolveRun:
        """Drive the run from wherever its records stand to its end."""
        self.run_id = run_id
        await self._load()
        if self.head.phase == "seeding":
            await self._seed()
        if self.head.phase == "evolving":
            await self._evolve()
        if self.head.phase == "finishing":
            await self._finish()
        return self.head

    async def _load(self) -> None:
        run = await self.store.get_run(self.run_id)
        if run is None:
            raise KeyError(self.run_id)
        self.head: EvolveRun = run
        self.spec = run.spec
        self.split = self._split()
        self.programs = {p.program_id: p for p in await self.store.programs(self.run_id)}
        self.db = IslandDatabase(self.spec.database, await self.store.islands(self.run_id, self.spec.database.islands),
                                 self.programs)
        self._active_base, self._drive_start = run.active_s, self.monotonic()
        for p in sorted(self.programs.values(), key=lambda p: p.sample):
            if p.code_hash and p.verdict not in ("no_code", "lost", "asked"):
                self.hashes.setdefault(p.code_hash, p.program_id)
            if p.fingerprint and p.verdict in ("ok", "rejected"):
                self.fingerprints.setdefault(p.fingerprint, p.program_id)
        self.head.asked = max([run.asked, *(p.sample for p in self.programs.values())])
        await self._repair_islands()
        self._recount()

    def _split(self) -> Split:
        fn = self.spec.function
        try:
            return split_program(self.spec.seed, fn) if fn else Split("", self.spec.seed)
        except (NoFunction, SyntaxError):  # seeding fails the run with the reason
            return Split("", self.spec.seed)

    async def _repair_islands(self) -> None:
        """A program scored "ok" whose island record was not written before a crash joins it now."""
        for p in sorted(self.programs.values(), key=lambda p: p.sample):
            if p.verdict != "ok" or p.island is None or p.sample == 0 or self.db.holds(p.program_id):
                continue
            isl = self.db.islands[p.island]
            if (p.finished_at or 0.0) >= isl.updated_at:
                self.db.register(p, p.island, p.sample)
                await self.store.put_island(isl)

    def _recount(self) -> list[int]:
        """The counters of the head and the islands, from the program records (the truth:
        a candidate's validity may only be known once its twin is scored). Returns the
        islands whose counters changed."""
        cands = [p for p in self.programs.values() if p.sample > 0]
        self.head.answered = sum(p.verdict not in ("asked", "pending") for p in cands)
        self.head.valid = sum(self._is_valid(p) for p in cands)
        verdicts: dict[str, int] = {}
        for p in cands:
            if p.verdict not in ("asked", "pending"):
                verdicts[p.verdict] = verdicts.get(p.verdict, 0) + 1
        self.head.verdicts = verdicts
        best = self.db.best()
        if best is not None:
            self.head.best_id, self.head.best_score = best.program_id, best.score
        changed = []
        for isl in self.db.islands:
            mine = [p for p in cands if p.island == isl.island]
            counts = (len(mine), sum(self._is_valid(p) for p in mine))
            if (isl.samples, isl.valid) != counts:
                isl.samples, isl.valid = counts
                changed.append(isl.island)
        return changed

    def _is_valid(self, p: EvolveProgram) -> bool:
        """A candidate that ran and earned a first-stage score, or repeats the code of one that did."""
        if p.stage_scores:
            return True
        twin = self.programs.get(p.duplicate_of) if p.verdict == "duplicate" else None
        return twin is not None and bool(twin.stage_scores)

    @property
    def active_s(self) -> float:
        return self._active_base + (self.monotonic() - self._drive_start)

    async def _save_head(self, force: bool = False, **fields: object) -> None:
        """Write the engine's view (counters, phase, bests, active time) into the head record."""
        now = self.monotonic()
        if not force and now - self._head_at < HEAD_EVERY_S:
            return
        self._head_at = now
        for i in self._recount():
            with contextlib.suppress(Exception):
                await self.store.put_island(self.db.islands[i])
        mine = self.head
        mine.active_s = self.active_s
        for k, v in fields.items():
            setattr(mine, k, v)
        keep = ("phase", "asked", "answered", "valid", "verdicts", "active_s", "best_id", "best_score", "seed_score",
                "final_id", "final_validation")

        def change(r: EvolveRun) -> bool:
            if r.status != "running":
                return False
            for k in keep:
                setattr(r, k, getattr(mine, k))
            for k in ("status", "error"):
                if k in fields:
                    setattr(r, k, fields[k])
            return True

        try:
            out = await self.store.mutate_run(self.run_id, change)
        except Exception as exc:
            if force:
                raise
            log.warning("head record not updated (next time): %s", exc)  # a bus hiccup: the counters wait
            return
        if out is not None:
            mine.status, mine.error, mine.spec = out.status, out.error, out.spec
            self.spec = out.spec

    # --- seeding --------------------------------------------------------------------------
    async def _seed(self) -> None:
        seed = self.programs.get(SEED_ID)
        if seed is None or seed.verdict in ("pending", ""):
            seed = EvolveProgram(run_id=self.run_id, program_id=SEED_ID, code=self.spec.seed, verdict="pending",
                                 function=self.split.evolved, code_hash=normalized_hash(self.split.evolved))
            problem = check_defines(seed.code, self.spec.function) if self.spec.function else None
            if problem:
                seed.verdict, seed.detail = "no_code", problem
            else:
                await self._cascade(seed, reject=False)
            seed.finished_at = self.clock()
            self.programs[SEED_ID] = seed
            await self.store.put_prog(seed)
        if seed.score is None:
            err = ErrorInfo(code="seed_unscored", message=f"the seed program earns no score ({seed.verdict}): {seed.detail[-500:]}")
            await self._save_head(force=True, status="failed", error=err, phase="ended")
            await self.ports.progress(self.head, err.message)
            return
        await self._validate(seed)
        self.hashes.setdefault(seed.code_hash, SEED_ID)
        if seed.fingerprint:
            self.fingerprints.setdefault(seed.fingerprint, SEED_ID)
        for i in range(len(self.db.islands)):
            if not self.db.islands[i].clusters:
                self.db.islands[i].founder = SEED_ID
                self.db.register(seed, i, 0)
                await self.store.put_island(self.db.islands[i])
        self._recount()
        await self._save_head(force=True, phase="evolving", seed_score=seed.score, final_id=SEED_ID,
                              final_validation=seed.validation)
        await self.ports.progress(self.head, f"seed scores {seed.score:.6g}"
                                  + (f" (validation {seed.validation:.6g})" if seed.validation is not None else ""))

    # --- evolving -------------------------------------------------------------------------
    def _budget_samples(self) -> int | None:
        return self.spec.sample_budget

    def _time_over(self) -> bool:
        return self.spec.minutes is not None and self.active_s >= self.spec.minutes * 60

    def _may_ask(self) -> bool:
        budget = self._budget_samples()
        return (budget is None or self.head.asked < budget) and not self._time_over()

    def _models(self) -> list[EvolveModel]:
        return self.spec.models or [EvolveModel()]

    async def _room(self) -> dict[str, int]:
        """Jobs each model may take now: its capacity (``concurrency`` split by weight, or
        what its servers' health replies say) minus its jobs out."""
        models = self._models()
        now = self.monotonic()
        if now - self._capacity_at >= CAPACITY_EVERY_S or not self._capacity:
            self._capacity_at = now
            if self.spec.concurrency is not None:
                total = sum(m.weight for m in models)
                self._capacity = {m.name: max(1, round(self.spec.concurrency * m.weight / total)) for m in models}
            else:
                with contextlib.suppress(Exception):
                    self._capacity = await self.ports.capacity([m.name for m in models])
                # A named model nobody serves gets no jobs (its share goes to the others); if
                # nothing is heard of any model, the coder copies get the default and a named
                # model one probe, whose failure says why in its verdict.
                heard = {m.name: self._capacity.get(m.name, 0) for m in models}
                if not any(heard.values()):
                    heard = {m.name: 1 if m.name else DEFAULT_CAPACITY for m in models}
                self._capacity = heard
        out = dict(self._capacity)
        for p in self.outstanding.values():
            if p.model in out:
                out[p.model] -= 1
        return out

    async def _evolve(self) -> None:
        sem = asyncio.Semaphore(self.spec.limits.score_concurrency)
        self._sem = sem
        for p in sorted(self.programs.values(), key=lambda p: p.sample):
            if p.verdict == "asked":
                self.outstanding[p.program_id] = p
                # A model request is not durable: it ended with the router that asked it.
                if not p.published or p.asked_model:
                    await self._publish(p)
            elif p.verdict == "pending" and p.sample > 0:
                self._spawn(p)
        try:
            while True:
                if self.head.status != "running":
                    return
                if self._time_over():
                    await self._drop_outstanding("the run's time budget ended before it came back")
                    break
                if not self._may_ask() and not self.outstanding and not self.scoring:
                    break
                backlog = self.spec.limits.score_concurrency if self.backlog is None else self.backlog
                while self._may_ask() and len(self.scoring) <= backlog:
                    room = await self._room()
                    if max(room.values()) <= 0:
                        break
                    await self._ask(room)
                for d in await self.ports.fetch_results(max_wait_s=self.poll_s):
                    await self._answer(d)
                await self._expire()
                self._reap()
                await self._save_head()
            await self._drain()
        finally:
            for t in self.scoring:
                t.cancel()
        if self.head.status == "running":
            await self._save_head(force=True, phase="finishing")

    async def _drain(self) -> None:
        """Let the scoring runs in progress finish (they are short)."""
        while self.scoring:
            await asyncio.wait(self.scoring)
            self._reap()

    def _reap(self) -> None:
        for t in [t for t in self.scoring if t.done()]:
            self.scoring.discard(t)
            t.result()  # surface a failure of the engine's own code

    def _spawn(self, prog: EvolveProgram) -> None:
        self.scoring.add(asyncio.create_task(self._score_candidate(prog)))

    def _pick_model(self, rng: random.Random, room: dict[str, int], prefer: str | None) -> EvolveModel:
        """A model with room: the previous sample's when it shares its prompt (one engine
        shares the prompt's prefill), else by weight."""
        free = [m for m in self._models() if room.get(m.name, 0) > 0]
        same = [m for m in free if m.name == prefer]
        if same:
            return same[0]
        return rng.choices(free, weights=[m.weight for m in free])[0]

    def _failure(self, island: int, sample: int) -> EvolveProgram | None:
        """The island's most recent failed or duplicate candidate, if recent enough."""
        if self.spec.database.max_failures_shown <= 0:
            return None
        recent = [p for p in self.programs.values() if p.island == island and p.sample > 0
                  and sample - p.sample <= FAILURE_WINDOW * len(self.db.islands)
                  and (p.verdict in FAILED or p.verdict == "duplicate")]
        return max(recent, key=lambda p: p.sample, default=None)

    async def _ask(self, room: dict[str, int]) -> None:
        n = self.head.asked + 1
        rng = random.Random(f"{self.spec.rng_seed}:{self.run_id}:{n}")
        cfg = self.spec.database
        if n > 1 and (n - 1) % cfg.reset_every == 0:
            changed = self.db.migrate(n - 1, rng)
            for i in changed:
                await self.store.put_island(self.db.islands[i])
            if changed:
                await self.ports.progress(self.head, f"migration ({cfg.migration}) at sample {n - 1}: islands {changed}")
        group = (n - 1) // cfg.samples_per_prompt  # consecutive samples of one prompt
        island = group % len(self.db.islands)
        prev = self.programs.get(f"s{n - 1}")
        follows = bool((n - 1) % cfg.samples_per_prompt) and prev is not None and prev.island == island
        model = self._pick_model(rng, room, prev.asked_model if follows and prev is not None else None)
        if follows and prev is not None and prev.prompt:
            text, parents = prev.prompt, list(prev.parents)
        else:
            versions = self.db.choose_versions(island, rng)
            hint = self.spec.hints[group % len(self.spec.hints)] if self.spec.hints else None
            text = versions_prompt(self.spec, self.split.skeleton, versions, self._failure(island, n), hint)
            parents = [p.program_id for p in reversed(versions)]
        prog = EvolveProgram(
            run_id=self.run_id, program_id=f"s{n}", sample=n, island=island, verdict="asked", model=model.name,
            asked_model=model.name, parents=parents, prompt=text,
            deadline=self.clock() + self.spec.limits.job_timeout_s,
        )
        self.programs[prog.program_id] = prog
        await self.store.put_prog(prog)
        self.head.asked = n
        self.outstanding[prog.program_id] = prog
        await self._publish(prog, model)

    async def _publish(self, prog: EvolveProgram, model: EvolveModel | None = None) -> None:
        """Send the job: to the coder-agent copies (JOBS stream), or as a model request to
        the processes serving a named model."""
        model = model or next((m for m in self._models() if m.name == prog.asked_model), EvolveModel(name=prog.asked_model))
        temperature = model.temperature if model.temperature is not None else self.spec.limits.temperature
        job = AgentJob(task_id=self.run_id, step_id=step_id(self.run_id, prog.sample), agent="coder", text=prog.prompt,
                       deadline=prog.deadline, max_tokens=self.spec.limits.max_tokens, mode="mutate",
                       temperature=temperature)
        with self.ports.sample_span(self.run_id, prog.sample) as traceparent:
            prog.traceparent = traceparent
            if model.name:
                await self.ports.ask_model(job, model.name)
            else:
                await self.ports.publish_jobs([job])
        prog.published = True
        await self.store.put_prog(prog)

    async def _answer(self, d: Delivery) -> None:
        res = d.result
        pid = res.step_id.rsplit(".", 1)[-1]
        prog = self.programs.get(pid)
        if res.task_id != self.run_id or prog is None or prog.verdict not in ("asked", "lost"):
            await d.ack()  # a redelivery of an answer already stored, or not ours
            return
        self.outstanding.pop(pid, None)
        self._fill(prog, res)
        prog.finished_at = self.clock() if prog.verdict != "pending" else None
        await self.store.put_prog(prog)  # stored before the ack: a crash now loses nothing
        await d.ack()
        if prog.verdict == "pending":
            self._spawn(prog)

    def _fill(self, prog: EvolveProgram, res: StepResult) -> None:
        """The candidate program (or why there is none) from a coder's answer."""
        prog.model = res.usage.model if res.usage and res.usage.model else prog.model
        prog.tokens = res.usage.output_tokens if res.usage else 0
        answer = res.code or ""
        if res.status != "done" or not answer.strip():
            prog.verdict = "no_code" if res.status in ("done", "failed") else res.status
            prog.detail = res.error.message if res.error else "the coder returned no program"
            prog.code = answer
            return
        fn = self.spec.function
        try:
            evolved = evolved_from_answer(answer, fn, len(prog.parents)) if fn else answer
        except NoFunction as exc:
            prog.verdict, prog.detail, prog.code = "no_code", str(exc), answer
            return
        prog.function, prog.code = evolved, assemble(self.split.skeleton, evolved) if fn else answer
        prog.code_hash = normalized_hash(evolved)
        twin = self.hashes.get(prog.code_hash)
        if twin is not None:
            prog.verdict, prog.duplicate_of = "duplicate", twin
            prog.detail = f"the same code as {twin}"
            return
        self.hashes[prog.code_hash] = prog.program_id
        prog.verdict = "pending"

    async def _expire(self) -> None:
        now = self.clock()
        for pid, prog in list(self.outstanding.items()):
            if now > prog.deadline:
                self.outstanding.pop(pid)
                prog.verdict, prog.detail, prog.finished_at = "lost", "no candidate came back before its deadline", now
                await self.store.put_prog(prog)

    async def _drop_outstanding(self, why: str) -> None:
        if self.outstanding:
            with contextlib.suppress(Exception):
                await self.ports.cancel_jobs(self.run_id)
        for pid, prog in list(self.outstanding.items()):
            self.outstanding.pop(pid)
            prog.verdict, prog.detail, prog.finished_at = "lost", why, self.clock()
            await self.store.put_prog(prog)
