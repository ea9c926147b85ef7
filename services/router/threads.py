"""Threads: conversations of tasks, kept in the thread KV bucket with the tasks' retention.

A task joins a thread when it names one (``context_id``: an A2A contextId, an MCP
context) or continues an earlier task (``follows``: ``syndicate submit --continue``). Each
task is a turn that records the turn it follows, so a thread is a tree: continuing an
older turn branches from it, and what an agent sees is the chain of turns up to the one
it follows (oldest first, within a character budget). A lone task has no thread record
until someone continues it; its thread then takes its task id.

Turns keep a bounded copy of what came of each task (request, answer, program, the checks
it held), so a thread outlives the task records it was built from, and any router
replica serves it from the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.router.state import TaskStore, ThreadStore
from shared import registry
from shared.contracts import (
    FINAL_STATUSES,
    MAX_TURN_ANSWER,
    MAX_TURN_CHECKS,
    MAX_TURN_CODE,
    MAX_TURN_TEXT,
    TaskResult,
    TaskState,
    ThreadRecord,
    ThreadTurn,
    thread_of,
)

MAX_CHAIN = 12  # earlier turns an agent is shown at most
JOB_BUDGET = 150_000  # characters of earlier turns in one AgentJob (the bus's payload limit binds)
RECORD_BUDGET = 500_000  # characters of one thread record; older turns are compacted, then dropped
EXCERPT = 600  # characters of an old turn's answer kept once it is compacted


@dataclass
class Placement:
    """Where a new task goes: its thread ("" for none) and the turn it follows."""

    thread_id: str = ""
    follows: str | None = None
    error: str = ""  # the task cannot be placed (it continues a task that is gone)


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def turn_of(state: TaskState, result: TaskResult | None = None, *, text: str | None = None) -> ThreadTurn:
    """The task as a turn of its thread (``result``: another than the state's, e.g. one
    proposed for review; ``text``: the request the turn answers, when not the task's)."""
    r = result if result is not None else state.result
    agent = state.route[-1] if state.route else ""
    kind = state.task.kind if state.task.kind != "auto" else registry.kind_of_agent(agent)
    code = r.code if r is not None and r.code and len(r.code) <= MAX_TURN_CODE else None
    own = state.task.task_id
    checks = [c.model_copy(update={"turn": c.turn or own}) for c in (r.checks if r else []) if c.held]
    return ThreadTurn(
        task_id=own, follows=state.follows, kind=kind, agent=agent,  # type: ignore[arg-type]
        text=cap(text if text is not None else state.task.text, MAX_TURN_TEXT),
        status=r.status if r is not None else state.status,
        answer=cap(r.answer, MAX_TURN_ANSWER) if r else "", code=code, checks=checks[:MAX_TURN_CHECKS],
        submitted_at=state.task.submitted_at,
        finished_at=r.finished_at if r is not None and r.status in FINAL_STATUSES else None,
    )


class Threads:
    """The router's view of threads: placing new tasks, the history a job carries, and
    keeping each turn's record up to date."""

    def __init__(self, threads: ThreadStore, tasks: TaskStore) -> None:
        self.store = threads
        self.tasks = tasks

    async def place(self, state: TaskState) -> Placement:
        """The thread and the earlier turn of a new task (``state`` not yet stored)."""
        task = state.task
        if task.follows:
            base = await self.tasks.get(task.follows)
            if base is None:
                return Placement(error=f"no task {task.follows} to continue (unknown, or past its retention)")
            thread_id = thread_of(base)
            await self.put(thread_id, turn_of(base), only_new=True)  # a lone task founds its thread now
            return Placement(thread_id, base.task.task_id)
        if not task.context_id:
            return Placement()
        record = await self.store.get(task.context_id)
        if record is not None:
            return Placement(task.context_id, await self.last_ended(record, task.task_id))
        base = await self.tasks.get(task.context_id)  # a task id used as the context (A2A's default)
        if base is not None and base.task.task_id != task.task_id:
            thread_id = thread_of(base)
            await self.put(thread_id, turn_of(base), only_new=True)
            return Placement(thread_id, base.task.task_id)
        return Placement(task.context_id, None)  # the first turn of a new thread

    async def last_ended(self, record: ThreadRecord, task_id: str) -> str | None:
        """The latest turn of a thread that has ended (a message sent while the one before
        it still runs follows the last that ended); a turn whose record missed its end is
        asked of its task."""
        for turn in reversed([t for t in record.turns if t.task_id != task_id]):
            if turn.status in FINAL_STATUSES:
                return turn.task_id
            state = await self.tasks.get(turn.task_id)
            if state is not None and state.status in FINAL_STATUSES:
                return turn.task_id
        return None

    async def put(self, thread_id: str, turn: ThreadTurn, *, only_new: bool = False) -> None:
        """Add ``turn`` to its thread, or replace the turn of the same task (``only_new``:
        leave an existing one as it is)."""

        def change(record: ThreadRecord) -> bool:
            for i, t in enumerate(record.turns):
                if t.task_id == turn.task_id:
                    if only_new or t == turn:
                        return False
                    record.turns[i] = turn
                    break
            else:
                record.turns.append(turn)
            compact(record)
            return True

        if await self.store.mutate(thread_id, change) is None:
            record = ThreadRecord(thread_id=thread_id, turns=[turn])
            if not await self.store.create(thread_id, record):
                await self.store.mutate(thread_id, change)  # created meanwhile by another task

    async def record(self, state: TaskState, result: TaskResult | None = None) -> None:
        """Bring the task's turn up to date (after it ended, or paused for review)."""
        if state.thread_id:
            await self.put(state.thread_id, turn_of(state, result))

    async def history(self, state: TaskState) -> list[ThreadTurn]:
        """The turns before this task, oldest first, within the job's budget. A turn whose
        record missed its end (its router died in between) is read from its task."""
        if not state.follows:
            return []
        record = await self.store.get(state.thread_id) if state.thread_id else None
        by_id = {t.task_id: t for t in record.turns} if record else {}
        chain: list[ThreadTurn] = []
        seen: set[str] = set()
        current: str | None = state.follows
        while current and current not in seen and len(chain) < MAX_CHAIN:
            seen.add(current)
            turn = by_id.get(current)
            if turn is None or turn.status not in FINAL_STATUSES:
                task = await self.tasks.get(current)
                if task is not None:
                    turn = turn_of(task)
            if turn is None:
                break
            chain.append(turn)
            current = turn.follows
        return fit(chain[::-1], JOB_BUDGET)


def size(turn: ThreadTurn) -> int:
    return len(turn.text) + len(turn.answer) + len(turn.code or "") + sum(len(c.check) for c in turn.checks)


def fit(turns: list[ThreadTurn], budget: int) -> list[ThreadTurn]:
    """The turns (oldest first) within ``budget`` characters: only the latest program is
    kept whole (it is the one a follow-up edits), then the oldest turns go first."""
    latest_code = max((i for i, t in enumerate(turns) if t.code), default=-1)
    out = [t if i == latest_code or not t.code else t.model_copy(update={"code": None}) for i, t in enumerate(turns)]
    while len(out) > 1 and sum(map(size, out)) > budget:
        out.pop(0)
    return out


def compact(record: ThreadRecord, budget: int = RECORD_BUDGET) -> None:
    """Keep a record within ``budget``: the oldest turns lose their program and most of
    their answer first, then leave the record."""
    total = sum(map(size, record.turns))
    for i, turn in enumerate(record.turns[:-1]):
        if total <= budget:
            return
        before = size(turn)
        record.turns[i] = turn.model_copy(update={"code": None, "answer": cap(turn.answer, EXCERPT), "checks": []})
        total += size(record.turns[i]) - before
    while len(record.turns) > 1 and total > budget:
        total -= size(record.turns.pop(0))
