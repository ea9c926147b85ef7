"""What coder-agent and reasoner-agent share: the model loaded once, jobs taken up to the
engine's free slots, token streaming as task events, cancellation, skipping steps that
already ended, and result publishing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import jetstream, nak_later, publish_durable, request
from shared.contracts import (
    FINAL_STATUSES,
    AgentJob,
    CancelRequest,
    SearchReply,
    SearchRequest,
    StepResult,
    TaskEvent,
    TaskState,
)
from shared.generation.serve import ModelServer
from shared.llm.base import GenerationRequest, GenerationResult, TextEngine, TokenCallback
from shared.llm.gguf_meta import served_facts
from shared.measurements import MeasurementRecorder, record_path
from shared.metrics import ServiceMetrics
from shared.service import ServiceRuntime, in_progress, publish_event, publish_token
from shared.settings import Settings

MAX_REMEMBERED_CANCELS = 10_000
SLOT_POLL_S = 0.05  # how often a job waiting for a free slot looks again
log = structlog.get_logger("agent")


class MeteredEngine:
    """The agent's engine, recording every generation in the service's metrics."""

    def __init__(self, engine: TextEngine, metrics: ServiceMetrics, recorder: MeasurementRecorder | None = None) -> None:
        self.inner, self.metrics, self.name, self.recorder = engine, metrics, engine.name, recorder
        self._live: set[str] = set()  # request ids generating now
        self._started = 0  # generations started so far: tells whether one ran alone

    async def generate(self, request: GenerationRequest, on_token: TokenCallback | None = None) -> GenerationResult:
        self._live.add(request.request_id)
        self._started += 1
        alone, started = len(self._live) == 1, self._started
        try:
            out = await self.inner.generate(request, on_token)
        finally:
            self._live.discard(request.request_id)
        self.metrics.observe_generation(out.input_tokens, out.output_tokens, out.seconds, out.ttft_s)
        if self.recorder is not None:
            self.recorder.observe(out.output_tokens, out.seconds, out.ttft_s, alone and started == self._started)
        return out

    def cancel(self, request_id: str) -> bool:
        """Stop a generation, and every one of the same task running under a sub-id
        ``<request_id>.<part>`` (reasoner-agent's parallel chains)."""
        parts = [r for r in self._live if r.startswith(f"{request_id}.")]
        hit = self.inner.cancel(request_id)
        for rid in parts:
            hit = self.inner.cancel(rid) or hit
        return hit

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    @property
    def chat_template(self) -> str:
        """The model's chat template (model requests render tools with it), "" if unknown."""
        return getattr(self.inner, "chat_template", "") or ""

    async def aclose(self) -> None:
        await self.inner.aclose()


class AgentRuntime:
    """One agent process: its engine, its broker and the tasks it is working on."""

    def __init__(self, role: str, broker: NatsBroker, runtime: ServiceRuntime) -> None:
        self.role = role
        self.broker = broker
        self.runtime = runtime
        self.engine: TextEngine | None = None
        self.cancelled: set[str] = set()
        self._kv: Any = None
        self.jobs: dict[asyncio.Task[None], Any] = {}  # jobs running now -> their messages
        self._job_ended = asyncio.Event()
        self.models: ModelServer | None = None  # serve_model(): its model to model requests

    def free_slots(self) -> int:
        """Jobs this agent may start now: its engine's slots not running or claimed by a
        waiting request, and never more jobs at once than slots (a job may run several
        requests of its own: sampled candidates, self-consistency chains)."""
        stats = self.engine.stats() if self.engine is not None else {}
        slots = int(stats.get("slots", 1) or 1)
        busy = int(stats.get("running", 0) or 0) + int(stats.get("waiting", 0) or 0)
        return max(0, min(slots - busy, slots - len(self.jobs)))

    async def take(self, msg: Any, work: Callable[[], Awaitable[None]]) -> None:
        """Take one JetStream job (its subscriber acks manually): wait for a free slot,
        telling JetStream the message is alive meanwhile, then run ``work`` in the
        background and return, so the subscriber fetches the next job while this one
        runs. The message is acked when ``work`` returns, nak'ed with a backoff when it
        raises (as ErrorReplyMiddleware did for these handlers; max_deliver bounds it) and
        nak'ed at once when the agent stops."""
        async with in_progress(msg):
            while self.free_slots() <= 0:
                # A job ending wakes us; a request of a running job ending is polled.
                self._job_ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._job_ended.wait(), SLOT_POLL_S)
        task = asyncio.create_task(self._run_job(msg, work))
        self.jobs[task] = msg
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self.jobs.pop(task, None)
        self._job_ended.set()

    async def _run_job(self, msg: Any, work: Callable[[], Awaitable[None]]) -> None:
        try:
            async with in_progress(msg):
                await work()
        except Exception:
            log.exception("job failed", role=self.role)
            await nak_later(msg)  # redelivered after a backoff, bounded by max_deliver
        else:
            with contextlib.suppress(Exception):
                await msg.ack()

    async def serve_model(self) -> None:
        """Serve the loaded model to model requests too: plain generations in the same
        engine slots and queue as the jobs (shared/generation/serve.py)."""
        assert self.engine is not None, "load() the model first"
        self.models = ModelServer(self.broker, self.runtime.service, self.runtime.metrics,
                                  instance=self.runtime.settings.instance)
        await self.models.serve(self.engine)

    async def stop_jobs(self) -> None:
        """Cancel the running jobs (their messages go back to JetStream at once, for
        another copy of the agent to take) and the running model requests."""
        if self.models is not None:
            await self.models.stop()
        running = dict(self.jobs)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for task, msg in running.items():
            if task.cancelled():
                with contextlib.suppress(Exception):
                    await msg.nack()

    async def load(self, settings: Settings, engine: TextEngine | None = None) -> TextEngine:
        """Load the role's model once (pinned to the process's cores) unless one is given."""
        if engine is None:
            from shared.llm.factory import load_engine

            engine = await asyncio.to_thread(load_engine, self.role, settings)
        stats = engine.stats()
        recorder = MeasurementRecorder(record_path(settings.state_dir, self.role), {
            "role": self.role, "model": engine.name, "path": stats.get("path"), "threads": stats.get("threads"),
            "cpus": stats.get("cpus"), "slots": stats.get("slots")})
        recorder.write()  # the resident memory with the model loaded, before any request
        self.engine = MeteredEngine(engine, self.runtime.metrics, recorder)
        self.runtime.model = engine.name
        self.runtime.threads = stats.get("threads")
        self.runtime.stats = engine.stats
        if stats.get("path"):  # the file's facts in health replies (the gateway's /api/tags, /api/show)
            with contextlib.suppress(OSError, ValueError):
                self.runtime.details["model_file"] = served_facts(stats["path"])
        self.runtime.metrics.watch_engine(engine.stats)
        return engine

    async def step_already_ended(self, job: AgentJob) -> bool:
        """True when the router already has a final record for this step (a redelivery)."""
        try:
            if self._kv is None:
                self._kv = await jetstream(self.broker).key_value(subjects.TASK_STATE_BUCKET)
            entry = await self._kv.get(job.task_id)
        except Exception:
            return False
        if entry.value is None:
            return False
        state = TaskState.model_validate_json(entry.value)
        if state.status in FINAL_STATUSES:
            return True
        return any(s.step_id == job.step_id and s.status in FINAL_STATUSES for s in state.steps)

    def token_sink(self, job: AgentJob):  # type: ignore[no-untyped-def]
        async def on_token(piece: str) -> None:
            await publish_token(self.broker, TaskEvent(task_id=job.task_id, type="token", step=self.role, text=piece))

        return on_token

    async def progress(self, job: AgentJob, text: str) -> None:
        await publish_event(self.broker, TaskEvent(task_id=job.task_id, type="progress", step=self.role, text=text))

    async def search(self, req: SearchRequest, timeout_s: float = 20.0) -> SearchReply:
        """Similarity search in the retriever (request/reply, any copy of it)."""
        # A search is idempotent: a retriever that died mid-request gets one more try.
        return await request(self.broker, subjects.RETRIEVER_SEARCH, req, SearchReply, timeout=timeout_s, attempts=2)

    def cancel(self, req: CancelRequest) -> None:
        # Cancels are broadcast to every agent, most for tasks it never runs: keep a bounded set.
        if len(self.cancelled) >= MAX_REMEMBERED_CANCELS:
            self.cancelled.pop()  # an arbitrary old one: cancels of running tasks are few
        self.cancelled.add(req.task_id)
        if self.engine is not None:
            self.engine.cancel(req.task_id)

    async def publish_result(self, result: StepResult, subject: str = subjects.STEP_RESULT) -> None:
        """Put a step's result on the JOBS stream (deduplicated by step id, retried through
        a bus restart); the job is acked only after this returns."""
        self.cancelled.discard(result.task_id)
        await publish_durable(self.broker, result, subject, stream=subjects.JOBS_STREAM,
                              msg_id=f"{result.step_id}.result")
