"""What every service process shares: its runtime record (health and metrics), the app factory,
progress heartbeats for long JetStream jobs, and task event publishing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import add_health_responder, heartbeat_s, instance_id
from shared.contracts import HealthReply, TaskEvent
from shared.metrics import ServiceMetrics, add_metrics_responder
from shared.settings import Settings, parse_cpus

# Engine stats a health reply carries in ``details`` (queue_depth/running have own fields).
STATS_IN_DETAILS = ("slots", "tokens_per_s", "n_ctx")


@dataclass
class ServiceRuntime:
    """Live facts about this process that its health reply reports."""

    service: str
    settings: Settings
    state: str = "starting"
    model: str | None = None
    threads: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    stats: Callable[[], dict[str, Any]] | None = None
    started_at: float = field(default_factory=time.time)
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)  # exported over METRICS_PING

    def health(self) -> HealthReply:
        stats = self.stats() if self.stats else {}
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = parse_cpus(self.settings.cpus)
        return HealthReply(
            service=self.service, instance=self.settings.instance or instance_id(self.service),
            pid=os.getpid(), state=self.state, cpus=cpus, threads=self.threads, model=self.model,  # type: ignore[arg-type]
            queue_depth=int(stats.get("queue_depth", 0)), running=int(stats.get("running", 0)),
            details={**self.details, **{k: stats[k] for k in STATS_IN_DETAILS if k in stats},
                     "uptime_s": round(time.time() - self.started_at, 1)},
        )


def create_app(runtime: ServiceRuntime, broker: NatsBroker) -> FastStream:
    """The FastStream app of a service; health answers from the moment the broker starts."""
    add_health_responder(broker, runtime.health)
    add_metrics_responder(broker, runtime.service, runtime.metrics, runtime.settings.instance)
    app = FastStream(broker, logger=None)

    @app.after_startup
    async def _ready() -> None:
        if runtime.state == "starting":
            runtime.state = "ready"

    @app.on_shutdown
    async def _stopping() -> None:
        runtime.state = "stopping"

    return app


def run(app: FastStream) -> None:
    """Run a service until SIGINT/SIGTERM."""
    asyncio.run(app.run(log_level=logging.WARNING))


@contextlib.asynccontextmanager
async def in_progress(msg: Any, every_s: float = 10.0) -> AsyncIterator[None]:
    """Tell JetStream a long job is alive so its ack_wait does not expire mid-work."""
    every_s = heartbeat_s(every_s)

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def publish_event(broker: NatsBroker, event: TaskEvent) -> None:
    """Best-effort live event (the KV task state is the durable truth)."""
    with contextlib.suppress(Exception):
        await broker.publish(event, subjects.task_events(event.task_id))


async def publish_token(broker: NatsBroker, event: TaskEvent) -> None:
    """Token events bypass the telemetry middleware: one span per token would drown the
    task's trace (the generation itself is one span with token counts)."""
    with contextlib.suppress(Exception):
        await broker.connection.publish(subjects.task_events(event.task_id), event.model_dump_json().encode())
