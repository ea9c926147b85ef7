"""The scoring half of ``IslandEngine`` (steps 4, 5 and 7 of engine.py's doc): a
candidate's cascade stage by stage, validation of the programs that may become the final
one, and the held-out test stage at the end of a run. A base class, so the engine's loop
(asking, answering, the budget) reads on its own; it shares the engine's state.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.router.evolution.database import IslandDatabase
from services.router.evolution.loop import SCORE_RETRIES
from services.router.evolution.scoring import StageScore, read_stage, scoring_request
from services.router.evolution.selection import normalized_hash
from shared.contracts import EvolveProgram, EvolveRun, EvolveSpec
from shared.errors import SyndicateError

if TYPE_CHECKING:
    from services.router.evolution.engine import EnginePorts

SEED_ID = "seed"


class Judging:
    # the engine's state this half reads and writes (IslandEngine sets it)
    store: Any
    ports: EnginePorts
    clock: Callable[[], float]
    run_id: str
    spec: EvolveSpec
    head: EvolveRun
    db: IslandDatabase
    programs: dict[str, EvolveProgram]
    fingerprints: dict[str, str]
    _sem: asyncio.Semaphore
    _lock: asyncio.Lock

    async def _save_head(self, force: bool = False, **fields: object) -> None:
        raise NotImplementedError  # the engine's

    async def _stage(self, prog: EvolveProgram, stage: str) -> StageScore:
        req = scoring_request(self.spec, prog.code, self.run_id, stage)
        for attempt in range(1, SCORE_RETRIES + 1):
            try:
                return read_stage(await self.ports.run_scoring(req, prog.traceparent))
            except SyndicateError as exc:
                if attempt == SCORE_RETRIES:
                    return StageScore(None, "internal_error", f"code-sandbox: {exc.message}")
                await asyncio.sleep(attempt)
        raise AssertionError("unreachable")

    async def _cascade(self, prog: EvolveProgram, reject: bool = True) -> None:
        """Score ``prog`` stage by stage in place (see the module doc, step 4)."""
        stages = self.spec.cascade.stages
        for i, stage in enumerate(stages):
            res = await self._stage(prog, stage)
            prog.wall_s = round(prog.wall_s + res.wall_s, 3)
            if res.score is None:
                prog.verdict, prog.detail = res.verdict, res.detail
                return
            prog.stage_scores[stage] = res.score
            prog.detail = res.detail
            if i == 0:
                prog.fingerprint = res.fingerprint
                twin = self.fingerprints.get(res.fingerprint) if res.fingerprint and reject else None
                if twin is not None:
                    prog.verdict, prog.duplicate_of = "duplicate", twin
                    prog.detail = f"the same behaviour as {twin} (fingerprint {res.fingerprint})"
                    return
                if res.fingerprint:
                    self.fingerprints.setdefault(res.fingerprint, prog.program_id)
            if i < len(stages) - 1 and reject and prog.island is not None:
                best = self.db.stage_best(prog.island, stage)
                if best is not None and res.score < best - self.spec.cascade.tolerance * abs(best):
                    prog.verdict = "rejected"
                    prog.detail = f"{stage} stage scored {res.score:.6g}; the island's best there is {best:.6g}"
                    return
        score = prog.stage_scores[stages[-1]]
        prog.score, prog.signature, prog.verdict = score, res.signature or [score], "ok"

    async def _score_candidate(self, prog: EvolveProgram) -> None:
        async with self._sem:
            await self._cascade(prog)
        prog.finished_at = self.clock()
        await self.store.put_prog(prog)
        async with self._lock:
            if prog.verdict != "ok" or prog.island is None:
                return
            island = self.db.islands[prog.island]
            became_best = self.db.register(prog, prog.island, self.head.asked)
            await self.store.put_island(island)
            best = self.db.best()
            if best is not None and best.program_id != self.head.best_id:
                self.head.best_id, self.head.best_score = best.program_id, best.score
                await self.ports.progress(self.head, f"new best {best.score:.6g} ({best.program_id}, island {best.island}, "
                                          f"sample {best.sample} of {self.head.asked})")
        if became_best or self._in_top(prog):
            async with self._sem:
                await self._validate(prog)
        await self._save_head(force=became_best)

    def _in_top(self, prog: EvolveProgram) -> bool:
        ranked = sorted((p for p in self.programs.values() if p.verdict == "ok" and p.score is not None),
                        key=lambda p: (-(p.score or 0.0), p.sample))
        return prog in ranked[: self.spec.cascade.validate_top]

    async def _validate(self, prog: EvolveProgram) -> None:
        """Score ``prog`` on the validation stage; it becomes the final program when best there."""
        stage = self.spec.cascade.validation
        if stage is None:  # the final program is the best training program
            return
        if prog.validation is None:
            res = await self._stage(prog, stage)
            prog.wall_s = round(prog.wall_s + res.wall_s, 3)
            if res.score is None:
                return
            prog.validation = res.score
            await self.store.put_prog(prog)
        for isl in self.db.islands:
            if isl.best_id == prog.program_id and isl.best_validation != prog.validation:
                isl.best_validation = prog.validation
                await self.store.put_island(isl)
        final = self.programs.get(self.head.final_id)
        if final is None or final.validation is None or _better(prog, final):
            self.head.final_id, self.head.final_validation = prog.program_id, prog.validation

    # --- finishing ------------------------------------------------------------------------
    async def _finish(self) -> None:
        """Validate what is left, then score the final program, the best training program,
        the seed and the baselines on the test stage."""
        self._sem = asyncio.Semaphore(self.spec.limits.score_concurrency)
        for pid in {isl.best_id for isl in self.db.islands} | {p.program_id for p in self._top()}:
            prog = self.programs.get(pid)
            if prog is not None and prog.score is not None:
                await self._validate(prog)
        if self.spec.cascade.validation is None:
            self.head.final_id = self.head.best_id
        test = self.spec.cascade.test
        if test is not None:
            todo = [self.programs[pid] for pid in dict.fromkeys([self.head.final_id, self.head.best_id, SEED_ID])
                    if pid in self.programs]
            for name, code in self.spec.baselines.items():
                base = self.programs.get(f"base-{name}") or EvolveProgram(
                    run_id=self.run_id, program_id=f"base-{name}", code=code, verdict="baseline")
                self.programs[base.program_id] = base
                todo.append(base)
            seed = self.programs[SEED_ID]
            if seed.test is None:
                await self._test(seed, test)
            for p in todo:  # a baseline with the seed's code (best fit is the seed) takes its result
                if p.test is None and normalized_hash(p.code) == normalized_hash(seed.code):
                    p.test = seed.test
                    await self.store.put_prog(p)
            await asyncio.gather(*(self._test(p, test) for p in todo if p.test is None))
        await self._save_head(force=True, phase="ended", status="done")
        final = self.programs.get(self.head.final_id)
        await self.ports.progress(self.head, f"done: final {self.head.final_id} training {final.score if final else None} "
                                  f"validation {self.head.final_validation}")

    def _top(self) -> list[EvolveProgram]:
        ranked = sorted((p for p in self.programs.values() if p.verdict == "ok" and p.score is not None),
                        key=lambda p: (-(p.score or 0.0), p.sample))
        return ranked[: self.spec.cascade.validate_top]

    async def _test(self, prog: EvolveProgram, stage: str) -> None:
        async with self._sem:
            res = await self._stage(prog, stage)
        prog.test = {"score": res.score, **res.metrics} if res.score is not None else {}
        if res.score is None:
            prog.detail = f"test stage: {res.verdict}: {res.detail}"
        await self.store.put_prog(prog)


def _better(a: EvolveProgram, b: EvolveProgram) -> bool:
    """Validation first, then training score, then the earlier sample."""
    return ((a.validation or -math.inf), (a.score or -math.inf), -a.sample) > (
        (b.validation or -math.inf), (b.score or -math.inf), -b.sample)
