"""reasoner-agent: answers with its pinned llama.cpp model, over retrieved context with
citations when the task names a collection."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.nats import NatsMessage, PullSub

from services.reasoner_agent.answerer import Answerer
from services.reasoner_agent.settings import ReasonerSettings
from shared import subjects
from shared.agent import AgentRuntime
from shared.bus import consumer, ensure_jetstream, js_stream, make_broker
from shared.contracts import AgentJob, CancelRequest, SearchReply, SearchRequest
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app

settings = ReasonerSettings()
log = setup_logging("reasoner-agent", settings.log_level, settings.log_json)
broker = make_broker("reasoner-agent", settings)
runtime = ServiceRuntime("reasoner-agent", settings)
app = create_app(runtime, broker)
agent = AgentRuntime("reasoner", broker, runtime)


@app.on_startup
async def startup() -> None:
    await ensure_jetstream(broker)
    await agent.load(settings)
    await agent.serve_model()  # also a model to model requests (the gateway's /v1 models, Ollama API)
    log.info("model loaded", model=runtime.model, threads=runtime.threads)


async def search(req: SearchRequest) -> SearchReply:
    return await agent.search(req, settings.search_timeout_s)


@broker.subscriber(
    subjects.JOB_REASONER, stream=js_stream(subjects.JOBS_STREAM), durable=subjects.REASONER_DURABLE,
    pull_sub=PullSub(timeout=1.0), ack_policy=AckPolicy.MANUAL, config=consumer(subjects.REASONER_DURABLE, ack_wait_s=60, max_deliver=3),
)
async def on_job(job: AgentJob, msg: NatsMessage) -> None:
    # Returns once the job has a slot: the subscriber then fetches the next one while
    # this one runs (acked when handle() returns; see AgentRuntime.take).
    await agent.take(msg, lambda: handle(job))


async def handle(job: AgentJob) -> None:
    if await agent.step_already_ended(job):
        return
    assert agent.engine is not None
    answerer = Answerer(agent.engine, search, settings, on_token=agent.token_sink(job),
                        progress=lambda text: agent.progress(job, text))
    result = await answerer.answer(job)
    # Still ours while the result is published (retried through a bus outage).
    log.info("step finished", task_id=job.task_id, status=result.status)
    await agent.publish_result(result)


@app.on_shutdown
async def stop_jobs() -> None:
    await agent.stop_jobs()


@broker.subscriber(subjects.TASK_CANCEL)
async def on_cancel(req: CancelRequest) -> None:
    agent.cancel(req)
