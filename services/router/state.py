"""Task state and threads in JetStream key-value buckets, updated with compare-and-set so
concurrent handlers (task intake, step results, reviews, cancel, deadline sweep) never
lose a write."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from shared.contracts import FINAL_STATUSES, TaskState, ThreadRecord

MAX_CAS_RETRIES = 20
R = TypeVar("R", bound=BaseModel)


class Records(Generic[R]):
    """Records of one model in one bucket, each key written with compare-and-set."""

    model: type[R]

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> R | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return self.model.model_validate_json(entry.value)

    async def create(self, key: str, record: R) -> bool:
        """Store a new record; False when the key already exists."""
        return await self._put_new(key, record)

    async def _put_new(self, key: str, record: R) -> bool:
        try:
            await self.kv.create(key, record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def mutate(self, key: str, change: Callable[[R], bool]) -> R | None:
        """Apply ``change`` (returns False to skip writing) with CAS retries.

        Returns the record as written (or as found when skipped); None when absent."""
        def step(record: R) -> R | None:
            if not change(record):
                return None
            record.updated_at = time.time()  # type: ignore[attr-defined]
            return record

        return (await self._swap(key, step))[0]

    async def _swap(self, key: str, step: Callable[[R], R | None], absent: R | None = None) -> tuple[R | None, bool]:
        """The compare-and-set loop under every write: read ``key``, write what ``step``
        makes of the record (None: leave it), again when another writer came between; an
        absent key is created as ``absent`` when one is given. Returns the record as written
        or as found (None when absent) and whether this call wrote it."""
        for _ in range(MAX_CAS_RETRIES):
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                entry = None
            if entry is None or entry.value is None:
                if absent is None:
                    return None, False
                if await self._put_new(key, absent):
                    return absent, True
                continue  # created meanwhile: read it
            found = self.model.model_validate_json(entry.value)
            record = step(found)
            if record is None:
                return found, False
            try:
                await self.kv.update(key, record.model_dump_json().encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            return record, True
        raise RuntimeError(f"{key}: too many concurrent updates")


class TaskStore(Records[TaskState]):
    model = TaskState

    async def create(self, state: TaskState) -> bool:  # type: ignore[override]
        """Store a new task; False when the id already exists (a redelivered submit)."""
        return await super().create(state.task.task_id, state)

    async def claim(self, state: TaskState) -> bool:
        """Store the router's first record of a task in place of the ``queued`` one its
        submitter wrote (``shared.bus.publish_task``), or as a new one when there is
        none; False when the router already took it (a redelivered submit) or it ended
        before (a cancel that came first)."""
        _, written = await self._swap(state.task.task_id, lambda found: state if found.status == "queued" else None,
                                      absent=state)
        return written

    async def active(self) -> list[TaskState]:
        """Tasks not in a final state (to rebuild deadlines after a restart)."""
        out: list[TaskState] = []
        try:
            keys = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return out
        for key in keys:
            state = await self.get(key)
            if state is not None and state.status not in FINAL_STATUSES:
                out.append(state)
        return out


class ThreadStore(Records[ThreadRecord]):
    model = ThreadRecord


def set_status(state: TaskState, status: str) -> None:
    state.status = status  # type: ignore[assignment]
    state.history.append((status, time.time()))
