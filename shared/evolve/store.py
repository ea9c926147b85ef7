"""An evolution run's records in the EVOLVE_BUCKET KV bucket.

Keys (KV keys allow ``[-/_=.A-Za-z0-9]``; run ids and program ids stay inside it):

- ``<run>.run``           -> EvolveRun (spec, progress, owner lease), updated by CAS
- ``<run>.gen.<NNNN>``    -> EvolveGeneration (jobs, survivors, trace ids)
- ``<run>.prog.<id>``     -> EvolveProgram (code, score, verdict, parents)
- ``<run>.island.<NN>``   -> EvolveIsland (mode "islands": clusters, best, curve)

Everything a run needs to resume is here: the head record says which generation finished
last and which programs survived it; an unfinished generation lists its jobs, and each
candidate that was already scored has its program record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nats
from nats.js.api import KeyValueConfig, StorageType

from shared import subjects
from shared.contracts import EvolveGeneration, EvolveIsland, EvolveProgram, EvolveRun, now

RUN_TTL_S = 30 * 86_400.0  # runs are kept a month (inspection, resume, extension)
CAS_RETRIES = 20


def run_key(run_id: str) -> str:
    return f"{run_id}.run"


def gen_key(run_id: str, n: int) -> str:
    return f"{run_id}.gen.{n:04d}"


def prog_key(run_id: str, program_id: str) -> str:
    return f"{run_id}.prog.{program_id}"


def island_key(run_id: str, island: int) -> str:
    return f"{run_id}.island.{island:02d}"


async def open_bucket(js: Any, *, create: bool = True) -> Any:
    """The evolution bucket (created on first use); None when absent and ``create`` is False."""
    try:
        return await js.key_value(subjects.EVOLVE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            return None
    try:
        return await js.create_key_value(KeyValueConfig(
            bucket=subjects.EVOLVE_BUCKET, history=1, ttl=RUN_TTL_S, storage=StorageType.FILE,
        ))
    except nats.js.errors.BadRequestError:  # another process created it meanwhile
        return await js.key_value(subjects.EVOLVE_BUCKET)


class RunStore:
    """Typed access to the bucket (any object with nats-py's KeyValue methods works)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def _get(self, key: str) -> tuple[bytes | None, int]:
        try:
            entry = await self.kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None, 0
        return entry.value, entry.revision

    async def get_run(self, run_id: str) -> EvolveRun | None:
        value, _ = await self._get(run_key(run_id))
        return EvolveRun.model_validate_json(value) if value else None

    async def create_run(self, run: EvolveRun) -> bool:
        """Write a new run's head record; False when the run id exists already."""
        try:
            await self.kv.create(run_key(run.run_id), run.model_dump_json().encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def mutate_run(self, run_id: str, change: Callable[[EvolveRun], bool]) -> EvolveRun | None:
        """Read-modify-write the head record with compare-and-set; ``change`` returns False to
        leave it alone. Returns the record as stored afterwards (None when it does not exist)."""
        for _ in range(CAS_RETRIES):
            value, revision = await self._get(run_key(run_id))
            if value is None:
                return None
            run = EvolveRun.model_validate_json(value)
            if not change(run):
                return run
            run.updated_at = now()
            try:
                await self.kv.update(run_key(run_id), run.model_dump_json().encode(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # someone else wrote in between: read again
            return run
        raise RuntimeError(f"run {run_id}: too many concurrent updates")

    async def get_gen(self, run_id: str, n: int) -> EvolveGeneration | None:
        value, _ = await self._get(gen_key(run_id, n))
        return EvolveGeneration.model_validate_json(value) if value else None

    async def put_gen(self, gen: EvolveGeneration) -> None:
        await self.kv.put(gen_key(gen.run_id, gen.n), gen.model_dump_json().encode())

    async def get_prog(self, run_id: str, program_id: str) -> EvolveProgram | None:
        value, _ = await self._get(prog_key(run_id, program_id))
        return EvolveProgram.model_validate_json(value) if value else None

    async def put_prog(self, prog: EvolveProgram) -> None:
        await self.kv.put(prog_key(prog.run_id, prog.program_id), prog.model_dump_json().encode())

    async def get_island(self, run_id: str, island: int) -> EvolveIsland | None:
        value, _ = await self._get(island_key(run_id, island))
        return EvolveIsland.model_validate_json(value) if value else None

    async def put_island(self, isl: EvolveIsland) -> None:
        isl.updated_at = now()
        await self.kv.put(island_key(isl.run_id, isl.island), isl.model_dump_json().encode())

    async def islands(self, run_id: str, count: int) -> list[EvolveIsland]:
        """Islands 0..count-1 of a run (a fresh record where none is stored yet)."""
        out = []
        for i in range(count):
            out.append(await self.get_island(run_id, i) or EvolveIsland(run_id=run_id, island=i))
        return out

    async def generations(self, run_id: str, upto: int) -> list[EvolveGeneration]:
        """Generations 1..upto that have a record, in order."""
        out = []
        for n in range(1, upto + 1):
            gen = await self.get_gen(run_id, n)
            if gen is not None:
                out.append(gen)
        return out

    async def programs(self, run_id: str) -> list[EvolveProgram]:
        """Every program recorded for a run."""
        prefix = f"{run_id}.prog."
        out = []
        for key in await self._keys():
            if key.startswith(prefix):
                value, _ = await self._get(key)
                if value:
                    out.append(EvolveProgram.model_validate_json(value))
        return out

    async def runs(self) -> list[EvolveRun]:
        """Every run's head record (oldest first)."""
        out = []
        for key in await self._keys():
            if key.endswith(".run"):
                value, _ = await self._get(key)
                if value:
                    out.append(EvolveRun.model_validate_json(value))
        return sorted(out, key=lambda r: r.created_at)

    async def _keys(self) -> list[str]:
        try:
            return list(await self.kv.keys())
        except nats.js.errors.NoKeysError:
            return []
