"""evaluator: runs evaluation jobs from the EVAL stream (``syndicate eval run ... --remote``)
so a long run survives the CLI closing. The logic lives in jobs/runner/scoring; this file
holds the handlers only."""

from __future__ import annotations

import asyncio

from faststream.nats import NatsMessage, PullSub

from shared import subjects
from shared.bus import consumer, ensure_jetstream, js_stream, make_broker
from shared.contracts import EvalRunRequest
from shared.evaluation.jobs import pin_to_placement, run_remote
from shared.evaluation.settings import EvaluatorSettings
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app, in_progress

settings = EvaluatorSettings()
log = setup_logging("evaluator", settings.log_level, settings.log_json)
broker = make_broker("evaluator", settings)
runtime = ServiceRuntime("evaluator", settings)
app = create_app(runtime, broker)
running: dict[str, str] = {}
runtime.stats = lambda: {"running": len(running)}


@app.on_startup
async def startup() -> None:
    runtime.details["cpus"] = pin_to_placement(settings)
    await ensure_jetstream(broker)


# One job at a time (max_ack_pending=1): a job owns this process's cores. Heartbeats keep
# the message ours while it runs; if the process dies, the job is redelivered and resumes
# from its run folder's item cache.
@broker.subscriber(
    subjects.EVAL_RUN, stream=js_stream(subjects.EVAL_STREAM), durable=subjects.EVALUATOR_DURABLE,
    pull_sub=PullSub(timeout=1.0),
    config=consumer(subjects.EVALUATOR_DURABLE, ack_wait_s=120, max_deliver=3, max_ack_pending=1),
)
async def on_run(req: EvalRunRequest, msg: NatsMessage) -> None:  # NatsMessage is Annotated with Context("message")
    log.info("eval job started", run_id=req.run_id, suite=req.suite, models=req.models)
    running[req.run_id] = req.suite
    try:
        async with in_progress(msg, every_s=30):
            result = await asyncio.to_thread(run_remote, settings, req)
    finally:
        running.pop(req.run_id, None)
    log.info("eval job ended", run_id=req.run_id, ok=result is not None,
             report=str(settings.eval_dir / req.run_id / "report.md"))
