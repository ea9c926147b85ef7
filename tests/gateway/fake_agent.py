"""A stand-in for coder-agent and reasoner-agent in gateway integration tests: consumes
the real JetStream job subjects with nats-py (in its own thread and event loop), streams
token events and publishes StepResults exactly as the agents do. What it does depends on
a marker in the task text:

    SLOW       2000 slow tokens (100 s: it outlasts a test's cancel on a busy machine); stops
               with ``cancelled`` when a CancelRequest arrives
    HANG       never answers (the router's deadline ends the task)
    QUEUEFULL  fails with error code ``queue_full`` (an engine's bounded queue was full)
    otherwise  a short answer, usage numbers and (coder) one sandbox verdict ``ok``

It also answers HEALTH_PING (queue depth 2) and METRICS_PING (a ServiceMetrics page),
and on demand RETRIEVER_EMBED (a fake embedder).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import nats

from shared import subjects
from shared.contracts import (
    AgentJob,
    Attempt,
    CancelRequest,
    EmbedReply,
    EmbedRequest,
    ErrorInfo,
    HealthReply,
    MetricsReply,
    SandboxRunSummary,
    StepResult,
    TaskEvent,
    Usage,
)
from shared.metrics import ServiceMetrics

ANSWER = "Hello from the fake {agent}."


class FakeAgents:
    def __init__(self, nats_url: str) -> None:
        self.url = nats_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.cancels: set[str] = set()
        self.jobs: list[AgentJob] = []
        self.metrics = ServiceMetrics()
        self.metrics.observe_sandbox("ok")
        self.metrics.observe_retrieval("search", 0.004)
        self.nc: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._embed_sub: Any = None

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _start(self) -> None:
        self.nc = await nats.connect(self.url)
        js = self.nc.jetstream()
        await self.nc.subscribe(subjects.TASK_CANCEL, cb=self._on_cancel)
        await self.nc.subscribe(subjects.HEALTH_PING, cb=self._on_health)
        await self.nc.subscribe(subjects.METRICS_PING, cb=self._on_metrics)
        for agent, subject, durable in (
            ("coder", subjects.JOB_CODER, subjects.CODER_DURABLE),
            ("reasoner", subjects.JOB_REASONER, subjects.REASONER_DURABLE),
        ):
            sub = await js.pull_subscribe(subject, durable=durable, stream=subjects.JOBS_STREAM)
            self._tasks.append(asyncio.create_task(self._consume(agent, sub)))

    async def _stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.nc.close()

    async def _on_cancel(self, msg: Any) -> None:
        self.cancels.add(CancelRequest.model_validate_json(msg.data).task_id)

    async def _on_health(self, msg: Any) -> None:
        for service in ("coder-agent", "reasoner-agent"):
            reply = HealthReply(service=service, instance=f"fake-{service}", pid=0, queue_depth=2, running=1, model="fake")
            await self.nc.publish(msg.reply, reply.model_dump_json().encode())

    async def _on_metrics(self, msg: Any) -> None:
        reply = MetricsReply(service="coder-agent", instance="fake-coder-agent", exposition=self.metrics.exposition())
        await self.nc.publish(msg.reply, reply.model_dump_json().encode())

    def enable_embedder(self) -> None:
        async def on_embed(msg: Any) -> None:
            req = EmbedRequest.model_validate_json(msg.data)
            vectors = [[float(len(t)), 0.5, -1.0] for t in req.texts]
            await self.nc.publish(msg.reply, EmbedReply(model="fake-embed", dim=3, vectors=vectors).model_dump_json().encode())

        async def sub() -> None:
            self._embed_sub = await self.nc.subscribe(subjects.RETRIEVER_EMBED, cb=on_embed)
            await self.nc.flush()

        self.run(sub())

    def disable_embedder(self) -> None:
        async def unsub() -> None:
            if self._embed_sub is not None:
                await self._embed_sub.unsubscribe()
                await self.nc.flush()

        self.run(unsub())

    async def _consume(self, agent: str, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                await msg.ack()
                job = AgentJob.model_validate_json(msg.data)
                self.jobs.append(job)
                asyncio.create_task(self._work(agent, job))

    async def _token(self, job: AgentJob, agent: str, text: str) -> None:
        event = TaskEvent(task_id=job.task_id, type="token", step=agent, text=text)
        await self.nc.publish(subjects.task_events(job.task_id), event.model_dump_json().encode())

    async def _work(self, agent: str, job: AgentJob) -> None:
        js = self.nc.jetstream()
        result = StepResult(task_id=job.task_id, step_id=job.step_id, agent=agent, status="done")
        if "HANG" in job.text:
            return
        if "QUEUEFULL" in job.text:
            result.status = "failed"
            result.error = ErrorInfo(code="queue_full", message=f"{agent} queue is full")
        elif "SLOW" in job.text:
            for i in range(2000):
                if job.task_id in self.cancels:
                    result.status = "cancelled"
                    break
                await self._token(job, agent, f"t{i} ")
                await asyncio.sleep(0.05)
        else:
            answer = ANSWER.format(agent=agent)
            for i in range(0, len(answer), 4):
                await self._token(job, agent, answer[i : i + 4])
            result.answer = answer
            result.usage = Usage(model=f"fake-{agent}", input_tokens=7, output_tokens=len(answer) // 4, seconds=0.2, ttft_s=0.01)
            if agent == "coder":
                verdict = SandboxRunSummary(name="tests", status="ok", exit_code=0)
                result.attempts = [Attempt(n=1, code="pass", verdicts=[verdict], passed=True)]
                result.tests = [verdict]
        await js.publish(subjects.STEP_RESULT, result.model_dump_json().encode(), stream=subjects.JOBS_STREAM,
                         headers={"Nats-Msg-Id": f"{job.step_id}.result"})
