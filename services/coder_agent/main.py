"""coder-agent: writes code with its pinned llama.cpp model, checks it in code-sandbox,
repairs it from the verdicts, returns code + test evidence."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.nats import NatsMessage, PullSub

from services.coder_agent import followup
from services.coder_agent.mutation import mutate
from services.coder_agent.settings import CoderSettings
from services.coder_agent.solver import CodeSolver
from shared import subjects
from shared.agent import AgentRuntime
from shared.bus import consumer, ensure_jetstream, jetstream, js_stream, make_broker, request
from shared.contracts import AgentJob, CancelRequest, EvolveRun, ExecRequest, ExecResult
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app

settings = CoderSettings()
log = setup_logging("coder-agent", settings.log_level, settings.log_json)
broker = make_broker("coder-agent", settings)
runtime = ServiceRuntime("coder-agent", settings)
app = create_app(runtime, broker)
agent = AgentRuntime("coder", broker, runtime)


@app.on_startup
async def startup() -> None:
    await ensure_jetstream(broker)
    await agent.load(settings)
    await agent.serve_model()  # also a model to model requests (the gateway's /v1 models, Ollama API)
    log.info("model loaded", model=runtime.model, threads=runtime.threads)


async def run_in_sandbox(req: ExecRequest) -> ExecResult:
    # Running a program twice is harmless: a sandbox killed mid-run gets one more try.
    return await request(broker, subjects.SANDBOX_EXEC, req, ExecResult, timeout=req.limits.wall_s + 20, attempts=2)


async def evolve_run_ended(run_id: str) -> bool:
    """True when the evolution run's record says it is over (its candidates would go unread)."""
    try:
        kv = await jetstream(broker).key_value(subjects.EVOLVE_BUCKET)
        entry = await kv.get(f"{run_id}.run")
    except Exception:
        return False
    return bool(entry.value) and EvolveRun.model_validate_json(entry.value).status != "running"


@broker.subscriber(
    subjects.JOB_CODER, stream=js_stream(subjects.JOBS_STREAM), durable=subjects.CODER_DURABLE,
    pull_sub=PullSub(timeout=1.0), ack_policy=AckPolicy.MANUAL, config=consumer(subjects.CODER_DURABLE, ack_wait_s=60, max_deliver=3),
)
async def on_job(job: AgentJob, msg: NatsMessage) -> None:
    # Returns once the job has a slot: the subscriber then fetches the next one while
    # this one runs (acked when handle() returns; see AgentRuntime.take).
    await agent.take(msg, lambda: handle(job))


async def handle(job: AgentJob) -> None:
    assert agent.engine is not None
    if job.mode == "mutate":  # a candidate for an evolution run: the run scores it itself
        if await evolve_run_ended(job.task_id):
            return  # the run finished or was cancelled while this job waited in the queue
        result = await mutate(agent.engine, job, settings.max_tokens)
        log.info("candidate written", run_id=job.task_id, step_id=job.step_id, status=result.status)
        await agent.publish_result(result, subjects.evolve_results(job.task_id))
        return
    if await agent.step_already_ended(job):
        return
    solver = CodeSolver(
        agent.engine, run_in_sandbox, settings, on_token=agent.token_sink(job),
        progress=lambda text: agent.progress(job, text), search=agent.search, is_cancelled=lambda task_id: task_id in agent.cancelled,
    )
    result = await followup.solve(solver, job, run_in_sandbox)  # a follow-up edits the last program, keeps its checks
    # Still ours while the result is published (retried through a bus outage).
    log.info("step finished", task_id=job.task_id, status=result.status, attempts=len(result.attempts))
    await agent.publish_result(result)


@app.on_shutdown
async def stop_jobs() -> None:
    await agent.stop_jobs()


@broker.subscriber(subjects.TASK_CANCEL)
async def on_cancel(req: CancelRequest) -> None:
    agent.cancel(req)
