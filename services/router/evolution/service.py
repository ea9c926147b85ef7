"""``EvolutionService``: evolution runs inside the router process, over NATS only.

- ``accept(task)``: a ``kind="evolve"`` TaskSubmit creates the run's records (task id =
  run id), or reopens a finished/failed run with a larger budget, then claims it; the
  run's spec picks the engine (``IslandEngine`` for mode "islands", ``EvolutionLoop``
  for mode "generations").
- Ownership is a lease in the run's head record (owner instance + heartbeat, CAS): the
  owner heartbeats every ``evolve_heartbeat_s``; any router finds runs whose owner went
  silent for ``evolve_lease_s`` (scan at start-up and every ``evolve_scan_s``) and takes
  them over, so a killed router's runs resume in its restart (or in another copy).
- Candidate jobs go to the JOBS stream (``syndicate.job.coder``, the coder-agent copies'
  shared durable consumer); results come back on ``evolve_results(run)`` through a
  durable pull consumer per run, which keeps what arrives while no router runs.
- Scoring is request/reply to code-sandbox (its queue group spreads the load).
- Tracing: each sample (mode "islands") or generation is its own trace (root span
  "evolve sample N" / "evolve generation N"); the job publish, the coder-agent's work and
  the sandbox runs are its children.
- In-flight jobs (mode "islands", no ``concurrency`` in the spec): the coder-agent copies'
  slots, from their health replies, plus one waiting job per copy.
- ``syndicate cancel RUN_ID`` (TASK_CANCEL) cancels a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import nats
from faststream.nats import NatsBroker
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from services.router.evolution.engine import IslandEngine
from services.router.evolution.loop import Delivery, EvolutionLoop
from services.router.evolution.settings import EvolutionSettings
from shared import subjects
from shared.bus import instance_id, jetstream, request, scatter
from shared.contracts import (
    AgentJob,
    CancelRequest,
    ChatTurn,
    ErrorInfo,
    EvolveRun,
    EvolveSpec,
    ExecRequest,
    ExecResult,
    GenerateRequest,
    HealthPing,
    HealthReply,
    StepResult,
    TaskEvent,
    TaskSubmit,
    Usage,
)
from shared.errors import SyndicateError
from shared.evolve.candidate import MUTATE_SYSTEM, code_block, sample_seed
from shared.evolve.store import RunStore, open_bucket
from shared.generation.client import GenerateClient, served_models
from shared.service import publish_event
from shared.telemetry import current_trace_id

FETCH_BATCH = 16
BUDGET_CANCEL = "deadline"  # reason of the cancel that stops a run's last jobs (ignored as a run cancel)


class RunPorts:
    """The loop's ports for one run, on the router's broker."""

    def __init__(self, broker: NatsBroker, run_id: str, settings: EvolutionSettings) -> None:
        self.broker = broker
        self.run_id = run_id
        self.settings = settings
        self._sub: Any = None
        self._tracer = trace.get_tracer("syndicate.evolve")
        self._client = GenerateClient(broker)
        self._model_jobs: dict[str, asyncio.Task[None]] = {}  # step id -> its model request
        self._model_results: asyncio.Queue[Delivery] = asyncio.Queue()

    async def publish_jobs(self, jobs: list[AgentJob]) -> None:
        for job in jobs:
            await self.broker.publish(
                job, subjects.JOB_CODER, stream=subjects.JOBS_STREAM, headers={"Nats-Msg-Id": job.step_id},
            )

    async def _subscription(self) -> Any:
        if self._sub is None:
            js = jetstream(self.broker)
            durable = subjects.evolve_durable(self.run_id)
            self._sub = await js.pull_subscribe(
                subjects.evolve_results(self.run_id), durable=durable, stream=subjects.JOBS_STREAM,
                config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
                                      max_deliver=10, deliver_policy=DeliverPolicy.ALL),
            )
        return self._sub

    async def fetch_results(self, max_wait_s: float) -> list[Delivery]:
        ready = []
        while not self._model_results.empty():
            ready.append(self._model_results.get_nowait())
        if ready:
            max_wait_s = 0.01  # a quick look at the stream too
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(FETCH_BATCH, timeout=max_wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return ready
        out = ready
        for msg in msgs:
            try:
                out.append(Delivery(StepResult.model_validate_json(msg.data), msg.ack))
            except ValidationError:
                await msg.ack()  # not a candidate result: never redeliver it
        return out

    async def run_scoring(self, req: ExecRequest, traceparent: str = "") -> ExecResult:
        with self._under(traceparent, "evolve score"):
            return await request(self.broker, subjects.SANDBOX_EXEC, req, ExecResult, timeout=req.limits.wall_s + 30)

    async def capacity(self, models: list[str]) -> dict[str, int]:
        """Jobs to keep in flight per model: its servers' slots plus one waiting job each
        ("" = the coder-agent copies, which pull from the JOBS stream)."""
        raw = await scatter(self.broker.connection, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(),
                            wait_s=0.5)
        replies = []
        for data in raw:
            with contextlib.suppress(ValidationError):
                replies.append(HealthReply.model_validate_json(data))
        served = served_models(replies)
        out = {}
        for name in models:
            servers = [r for r in replies if r.service == "coder-agent"] if not name else (
                served[name].instances if name in served else [])
            out[name] = sum(int(r.details.get("slots") or 1) + 1 for r in servers)
        return out

    async def ask_model(self, job: AgentJob, model: str) -> None:
        """A candidate from a named model (a model request: any process serving it)."""
        task = asyncio.create_task(self._generate(job, model))
        self._model_jobs[job.step_id] = task
        task.add_done_callback(lambda _: self._model_jobs.pop(job.step_id, None))

    async def _generate(self, job: AgentJob, model: str) -> None:
        req = GenerateRequest(
            request_id=job.step_id.replace(".", "-"), model=model, stream=False, max_tokens=job.max_tokens,
            temperature=job.temperature if job.temperature is not None else 0.8, seed=sample_seed(job.step_id),
            messages=[ChatTurn(role="system", content=MUTATE_SYSTEM), ChatTurn(role="user", content=job.text)],
            timeout_s=max(1.0, job.deadline - time.time()),
        )
        usage = Usage(model=model)
        try:
            reply = await self._client.generate(req)
            text = reply.choices[0].text if reply.choices else ""
            usage = reply.usage.model_copy(update={"model": reply.model or model})
            result = StepResult(task_id=job.task_id, step_id=job.step_id, agent="coder", status="done",
                                answer=text, code=code_block(text) if text.strip() else None, usage=usage)
        except SyndicateError as exc:
            status = "timeout" if exc.code == "deadline_exceeded" else "failed"
            result = StepResult(task_id=job.task_id, step_id=job.step_id, agent="coder", status=status, usage=usage,  # type: ignore[arg-type]
                                error=ErrorInfo(code=exc.code, message=f"model {model}: {exc.message}"))

        async def ack() -> None:
            return None

        self._model_results.put_nowait(Delivery(result, ack))

    async def cancel_jobs(self, run_id: str) -> None:
        """Stop the run's generations on every coder-agent and model server (the budget is spent)."""
        await self.broker.publish(CancelRequest(task_id=run_id, reason=BUDGET_CANCEL), subjects.TASK_CANCEL)
        for step in list(self._model_jobs):
            await self._client.cancel(step.replace(".", "-"), "the evolution run's budget is spent")

    @contextlib.contextmanager
    def sample_span(self, run_id: str, sample: int) -> Iterator[str]:
        """A root span per sample: its job's publish, the coder's work and its scoring join it."""
        with self._tracer.start_as_current_span(
            f"evolve sample {sample}", context=otel_context.Context(),
            attributes={"evolve.run_id": run_id, "evolve.sample": sample},
        ) as span:
            ctx = span.get_span_context()
            yield f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}" if ctx.is_valid else ""

    @contextlib.contextmanager
    def _under(self, traceparent: str, name: str) -> Iterator[None]:
        if not traceparent:
            yield
            return
        parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        with self._tracer.start_as_current_span(name, context=parent):
            yield

    @contextlib.contextmanager
    def generation_span(self, run_id: str, n: int) -> Iterator[str]:
        name = "evolve seed" if n == 0 else f"evolve generation {n}"
        # A fresh root context: each generation is its own trace.
        with self._tracer.start_as_current_span(
            name, context=otel_context.Context(), attributes={"evolve.run_id": run_id, "evolve.generation": n},
        ):
            yield current_trace_id()

    async def progress(self, run: EvolveRun, text: str) -> None:
        await publish_event(self.broker, TaskEvent(task_id=run.run_id, type="progress", step="evolve", text=text))

    async def close(self, delete_consumer: bool) -> None:
        for task in list(self._model_jobs.values()):
            task.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if delete_consumer:
            with contextlib.suppress(Exception):
                await jetstream(self.broker).delete_consumer(subjects.JOBS_STREAM, subjects.evolve_durable(self.run_id))


class EvolutionService:
    """The router's evolution runs: accept, claim, drive, heartbeat, resume, cancel."""

    def __init__(self, broker: NatsBroker, log: Any, settings: EvolutionSettings | None = None) -> None:
        self.broker = broker
        self.log = log
        self.settings = settings or EvolutionSettings()
        self.me = self.settings.instance or instance_id("router")
        self.store: RunStore | None = None
        self.running: dict[str, asyncio.Task[None]] = {}
        self._bg: list[asyncio.Task[None]] = []
        self._cancel_sub: Any = None

    async def start(self) -> None:
        """Open the bucket, listen for cancels, start heartbeats and the orphan scan."""
        self.store = RunStore(await open_bucket(jetstream(self.broker)))
        self._cancel_sub = await self.broker.connection.subscribe(subjects.TASK_CANCEL, cb=self._on_cancel)
        self._bg = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._scan())]

    async def stop(self) -> None:
        """Stop driving runs and give up their leases (another router may take them at once)."""
        for t in [*self._bg, *self.running.values()]:
            t.cancel()
        for t in [*self._bg, *self.running.values()]:
            with contextlib.suppress(BaseException):
                await t
        if self.store is not None:
            for run_id in list(self.running):
                with contextlib.suppress(Exception):
                    await self.store.mutate_run(run_id, self._release)
        self.running.clear()

    def _release(self, run: EvolveRun) -> bool:
        if run.owner != self.me:
            return False
        run.owner, run.heartbeat_at = "", 0.0
        return True

    async def accept(self, task: TaskSubmit) -> None:
        """Start (or reopen, or re-claim) the run a ``kind="evolve"`` task names."""
        assert self.store is not None
        spec = task.evolve
        run_id = task.task_id
        existing = await self.store.get_run(run_id)
        if existing is None:
            if spec is None:
                self.log.warning("evolve task without a spec", run_id=run_id)
                return
            await self.store.create_run(EvolveRun(run_id=run_id, spec=spec))
            self.log.info("evolution run created", run_id=run_id, name=spec.name,
                          generations=spec.generations, population=spec.population)
        elif existing.status != "running":

            def reopen(r: EvolveRun) -> bool:
                if r.status == "running":
                    return False
                grown = extended(r, spec)
                if r.status == "done" and grown is None:
                    return False
                r.spec = grown or r.spec
                if r.spec.mode == "islands" and r.phase in ("finishing", "ended"):
                    r.phase = "evolving" if r.seed_score is not None else "seeding"
                r.status, r.error, r.owner, r.heartbeat_at = "running", None, "", 0.0
                return True

            reopened = await self.store.mutate_run(run_id, reopen)
            if reopened is not None and reopened.status == "running":
                self.log.info("evolution run reopened", run_id=run_id, samples=reopened.spec.samples,
                              minutes=reopened.spec.minutes, generations=reopened.spec.generations)
        await self.claim(run_id)

    async def claim(self, run_id: str) -> bool:
        """Take the run if it runs and nobody holds a live lease on it; start driving it."""
        assert self.store is not None
        now = time.time()

        def take(r: EvolveRun) -> bool:
            if r.status != "running" or r.owner == self.me:
                return False
            if r.owner and now - r.heartbeat_at < self.settings.evolve_lease_s:
                return False
            r.owner, r.heartbeat_at = self.me, now
            return True

        run = await self.store.mutate_run(run_id, take)
        if run is None or run.owner != self.me or run.status != "running":
            return False
        if run_id not in self.running:
            self.log.info("evolution run claimed", run_id=run_id, generation=run.generation)
            self.running[run_id] = asyncio.create_task(self._drive(run_id))
        return True

    async def _drive(self, run_id: str) -> None:
        assert self.store is not None
        ports = RunPorts(self.broker, run_id, self.settings)
        ended = False
        try:
            head = await self.store.get_run(run_id)
            if head is not None and head.spec.mode == "islands":
                run = await IslandEngine(self.store, ports).run(run_id)
            else:
                run = await EvolutionLoop(self.store, ports, grace_s=self.settings.evolve_grace_s).run(run_id)
            ended = run.status != "running"
            self.log.info("evolution run ended", run_id=run_id, status=run.status, best=run.best_score,
                          seed=run.seed_score, generation=run.generation, samples=run.asked, final=run.final_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("evolution run failed", run_id=run_id)
            err = ErrorInfo(code="evolve_failed", message=f"{type(exc).__name__}: {exc}")

            def fail(r: EvolveRun) -> bool:
                if r.status != "running":
                    return False
                r.status, r.error = "failed", err
                return True

            with contextlib.suppress(Exception):
                await self.store.mutate_run(run_id, fail)
            ended = True
        finally:
            await ports.close(delete_consumer=ended)
            self.running.pop(run_id, None)
            if ended:
                with contextlib.suppress(Exception):
                    await self.store.mutate_run(run_id, self._release)

    async def _heartbeats(self) -> None:
        """Renew the leases of the runs this router drives; stop any it lost."""
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.evolve_heartbeat_s)
            for run_id in list(self.running):
                now = time.time()

                def beat(r: EvolveRun, now: float = now) -> bool:
                    if r.owner != self.me:
                        return False
                    r.heartbeat_at = now
                    return True

                try:
                    run = await self.store.mutate_run(run_id, beat)
                except Exception as exc:  # NATS hiccup: the next beat tries again
                    self.log.warning("heartbeat failed", run_id=run_id, error=str(exc))
                    continue
                if run is None or run.owner != self.me:
                    self.log.warning("evolution run lost its lease", run_id=run_id)
                    task = self.running.pop(run_id, None)
                    if task is not None:
                        task.cancel()

    async def _scan(self) -> None:
        """Claim running runs whose owner stopped heartbeating (start-up, then periodically)."""
        assert self.store is not None
        while True:
            try:
                for run in await self.store.runs():
                    if run.status == "running" and run.run_id not in self.running:
                        await self.claim(run.run_id)
            except Exception as exc:
                self.log.warning("evolution scan failed", error=str(exc))
            await asyncio.sleep(self.settings.evolve_scan_s)

    async def _on_cancel(self, msg: Any) -> None:
        try:
            req = CancelRequest.model_validate_json(msg.data)
        except ValidationError:
            return
        if req.reason == BUDGET_CANCEL or self.store is None:
            return
        err = ErrorInfo(code="cancelled", message=req.reason)

        def cancel(r: EvolveRun) -> bool:
            if r.status != "running":
                return False
            r.status, r.error = "cancelled", err
            return True

        with contextlib.suppress(Exception):
            run = await self.store.mutate_run(req.task_id, cancel)
            if run is not None and run.status == "cancelled":
                task = self.running.get(req.task_id)
                if task is not None:
                    task.cancel()
                    await RunPorts(self.broker, req.task_id, self.settings).close(delete_consumer=True)
                self.log.info("evolution run cancelled", run_id=req.task_id)


def extended(run: EvolveRun, asked: EvolveSpec | None) -> EvolveSpec | None:
    """The run's spec with the larger budget a resume asks for (None: nothing more to do).

    Mode "islands": a larger ``samples`` or ``minutes`` than the run has used; mode
    "generations": more ``generations`` than it has finished."""
    spec = run.spec
    if asked is None:
        return None
    if spec.mode == "generations":
        if asked.generations <= run.generation:
            return None
        return spec.model_copy(update={"generations": max(asked.generations, spec.generations)})
    more: dict[str, object] = {}
    if asked.samples is not None and asked.samples > run.asked:
        more["samples"] = asked.samples
    if asked.minutes is not None and asked.minutes * 60 > run.active_s + 1:
        more["minutes"] = asked.minutes
    if not more and asked.samples is None and asked.minutes is None and asked.sample_budget and asked.sample_budget > run.asked:
        more["generations"] = asked.generations  # an old-style spec: generations x children samples
    return spec.model_copy(update=more) if more else None
