"""The console's live feeds, one per gateway however many pages are open: the agents (a
HEALTH_PING round every second while a page watches) and the recent tasks (an ordered
consumer over the task-state KV's stream, from a bounded backlog on). Each change is
rendered once and handed to every open page, so an extra page costs a queue, not bus work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from services.gateway.console.data import (
    AgentRow,
    TaskSummary,
    agent_rows,
    read_stack_record,
    summarize,
)
from shared import registry, subjects
from shared.contracts import HealthPing, HealthReply

log = structlog.get_logger("gateway.console")

PING_EVERY_S = 1.0
REPLY_WAIT_S = 0.3  # replies gathered this long after a ping before the table is drawn
FORGET_S = 3.5  # an instance silent this long leaves the table (or shows down)
IDLE_AFTER_S = 15.0  # no page for this long: stop pinging
KEEP_TASKS = 500  # summaries kept in memory (the newest by submission)
BACKLOG = 2_000  # KV updates replayed at start (about the last few hundred tasks)
QUEUE = 256  # updates a slow page may lag behind before it misses some
KV_STREAM = f"KV_{subjects.TASK_STATE_BUCKET}"
# Service -> the JetStream consumer its copies share (what waits for them on the bus).
QUEUES = {
    "router": (subjects.TASKS_STREAM, subjects.ROUTER_TASKS_DURABLE),
    **{svc.name: (subjects.JOBS_STREAM, svc.durable) for svc in registry.SERVICES if svc.agent is not None},
}
KV_PREFIX = f"$KV.{subjects.TASK_STATE_BUCKET}."


class Channel:
    """Fan-out of rendered updates to the pages subscribed now."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Any]] = set()
        self.left_at = time.monotonic()
        self.wanted = asyncio.Event()

    def publish(self, item: Any) -> None:
        for q in self.queues:
            if q.full():  # a page that stopped reading: drop its oldest update
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(item)

    @contextlib.asynccontextmanager
    async def subscribe(self, q: asyncio.Queue[Any] | None = None) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue of this channel's updates (``q``: share one queue between channels)."""
        q = q if q is not None else asyncio.Queue(maxsize=QUEUE)
        self.queues.add(q)
        self.wanted.set()
        try:
            yield q
        finally:
            self.queues.discard(q)
            if not self.queues:
                self.left_at = time.monotonic()

    @property
    def idle(self) -> bool:
        return not self.queues and time.monotonic() - self.left_at > IDLE_AFTER_S


class AgentsFeed:
    """Health replies of every instance, pinged while someone watches."""

    def __init__(self, state_dir: Path, render: Callable[[list[AgentRow]], str]) -> None:
        self.state_dir = state_dir
        self.render = render
        self.channel = Channel()
        self.replies: dict[str, tuple[HealthReply, float]] = {}
        self.waiting: dict[str, int] = {}
        self.html = ""  # the last table drawn

    def on_reply(self, data: bytes) -> None:
        try:
            reply = HealthReply.model_validate_json(data)
        except ValidationError:
            return  # another contract version or a stray message
        self.replies[reply.instance] = (reply, time.monotonic())

    def snapshot(self) -> list[AgentRow]:
        now = time.monotonic()
        fresh = [r for r, at in self.replies.values() if now - at < FORGET_S]
        self.replies = {r.instance: (r, at) for r, at in self.replies.values() if now - at < FORGET_S}
        return agent_rows(fresh, read_stack_record(self.state_dir), self.waiting)

    async def count_waiting(self, nc: nats.NATS) -> None:
        """Work waiting in JetStream for each consuming service: tasks not yet taken by the
        router, jobs not yet taken by an agent's copies (unknown when the bus says nothing)."""
        js = nc.jetstream()
        waiting: dict[str, int] = {}
        for service, (stream, durable) in QUEUES.items():
            with contextlib.suppress(Exception):
                info = await js.consumer_info(stream, durable, timeout=0.5)
                waiting[service] = int(info.num_pending or 0)
        self.waiting = waiting

    async def run(self, nc: nats.NATS) -> None:
        inbox = nc.new_inbox()

        async def cb(msg: Any) -> None:
            self.on_reply(msg.data)

        sub = await nc.subscribe(inbox, cb=cb)
        ping = HealthPing().model_dump_json().encode()
        try:
            while True:
                if self.channel.idle:
                    self.channel.wanted.clear()
                    await self.channel.wanted.wait()
                started = time.monotonic()
                with contextlib.suppress(Exception):  # the bus reconnecting: try again next round
                    await nc.publish(subjects.HEALTH_PING, ping, reply=inbox)
                await asyncio.gather(self.count_waiting(nc), asyncio.sleep(REPLY_WAIT_S))
                html = self.render(self.snapshot())
                if html != self.html:
                    self.html = html
                    self.channel.publish(("agents", html))
                await asyncio.sleep(max(0.0, PING_EVERY_S - (time.monotonic() - started)))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class TasksFeed:
    """The newest tasks, kept current from the task-state KV's stream."""

    def __init__(self, render: Callable[[TaskSummary], str]) -> None:
        self.render = render
        self.channel = Channel()
        self.tasks: dict[str, TaskSummary] = {}
        self.loaded = asyncio.Event()  # the backlog has been read

    def recent(self, n: int = 50) -> list[TaskSummary]:
        return sorted(self.tasks.values(), key=lambda t: t.submitted_at, reverse=True)[:n]

    def apply(self, key: str, data: bytes, deleted: bool) -> TaskSummary | None:
        """Record one KV update; the changed summary (None when nothing to show)."""
        if deleted:
            self.tasks.pop(key, None)
            return None
        summary = summarize(data)
        if summary is None:
            return None
        old = self.tasks.get(summary.task_id)
        if old is not None and old.updated_at > summary.updated_at:
            return None  # an older revision replayed after a newer one
        self.tasks[summary.task_id] = summary
        if len(self.tasks) > KEEP_TASKS:
            oldest = min(self.tasks.values(), key=lambda t: t.submitted_at)
            self.tasks.pop(oldest.task_id, None)
            if oldest.task_id == summary.task_id:
                return None
        return summary

    async def run(self, nc: nats.NATS) -> None:
        js = nc.jetstream()
        while True:  # the router creates the bucket: wait for it
            try:
                info = await js.stream_info(KV_STREAM)
                break
            except Exception:
                await asyncio.sleep(2.0)
        last = info.state.last_seq or 0
        start = max(1, last - BACKLOG + 1)

        async def cb(msg: Any) -> None:
            headers = msg.headers or {}
            # A delete, a purge, or (nats-server 2.11+) a marker the server left when it
            # expired the key: the task is gone either way.
            gone = headers.get("KV-Operation", "") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers
            summary = self.apply(msg.subject.removeprefix(KV_PREFIX), msg.data, gone)
            meta = msg.metadata
            if not self.loaded.is_set() and meta.sequence.stream >= last:
                self.loaded.set()
            if summary is not None and self.loaded.is_set() and self.channel.queues:
                self.channel.publish(("task", (summary, self.render(summary))))

        sub = await js.subscribe(
            f"{KV_PREFIX}>", stream=KV_STREAM, cb=cb, ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, config=ConsumerConfig(opt_start_seq=start),
        )
        if last == 0 or not info.state.messages:
            self.loaded.set()
        # Whatever the backlog held (messages may have expired meanwhile), new tasks flow
        # to the pages after this long.
        asyncio.get_running_loop().call_later(5.0, self.loaded.set)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class ConsoleHub:
    """Starts the feeds on first use (the bus must be up) and stops them with the app."""

    def __init__(self, state_dir: Path, render_agents: Callable[[list[AgentRow]], str],
                 render_task: Callable[[TaskSummary], str]) -> None:
        self.agents = AgentsFeed(state_dir, render_agents)
        self.tasks = TasksFeed(render_task)
        self._jobs: list[asyncio.Task[None]] = []

    def start(self, nc: nats.NATS | None) -> bool:
        """Start the feeds once the bus is connected; False while it is not."""
        if self._jobs:
            return True
        if nc is None:
            return False
        self._jobs = [asyncio.create_task(self._guard(f.run, nc), name=f"console-{n}")
                      for n, f in (("agents", self.agents), ("tasks", self.tasks))]
        return True

    async def _guard(self, run: Callable[[nats.NATS], Any], nc: nats.NATS) -> None:
        """Keep a feed running: an error restarts it after a pause (the page sees a gap)."""
        while True:
            try:
                await run(nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("console feed failed, restarting", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(2.0)

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self._jobs = []
