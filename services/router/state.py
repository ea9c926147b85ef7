"""Task state in the JetStream key-value bucket, updated with compare-and-set so
concurrent handlers (task intake, step results, cancel, deadline sweep) never lose a write."""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.contracts import FINAL_STATUSES, TaskState

MAX_CAS_RETRIES = 20


class TaskStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, task_id: str) -> TaskState | None:
        try:
            entry = await self.kv.get(task_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return TaskState.model_validate_json(entry.value)

    async def create(self, state: TaskState) -> bool:
        """Store a new task; False when the id already exists (a redelivered submit)."""
        try:
            await self.kv.create(state.task.task_id, state.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def mutate(self, task_id: str, change: Callable[[TaskState], bool]) -> TaskState | None:
        """Apply ``change`` (returns False to skip writing) with CAS retries.

        Returns the state as written (or as found when skipped); None when absent."""
        for _ in range(MAX_CAS_RETRIES):
            try:
                entry = await self.kv.get(task_id)
            except KeyNotFoundError:
                return None
            if entry.value is None:
                return None
            state = TaskState.model_validate_json(entry.value)
            if not change(state):
                return state
            state.updated_at = time.time()
            try:
                await self.kv.update(task_id, state.model_dump_json().encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            return state
        raise RuntimeError(f"task {task_id}: too many concurrent updates")

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


def set_status(state: TaskState, status: str) -> None:
    state.status = status  # type: ignore[assignment]
    state.history.append((status, time.time()))
