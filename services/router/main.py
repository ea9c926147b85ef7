"""router: takes submitted tasks, routes them, dispatches steps, tracks state, enforces
deadlines and cancellation, publishes progress and the final result.

Crash safety: every handler records its effect in the KV (create / compare-and-set)
before its message is acked, and every follow-up (dispatch, next step) is derived from
the KV on redelivery, so a router killed at any point neither loses nor repeats a step.
Threads (threads.py): a task that continues an earlier one gets the exchange before it in
its job. Review (review.py): a task submitted with ``review`` pauses in ``input_required``
before its final answer until a decision arrives on the TASKS stream.
Admission control: beyond ``max_active_tasks`` a new task ends ``rejected`` at once
(error ``overloaded``). A message that exhausts its consumer's ``max_deliver`` (an agent
that dies on it every time) becomes a dead letter and, for task work, a ``failed`` task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
from faststream import Context
from faststream.nats import PullSub
from opentelemetry import trace
from pydantic import ValidationError

from services.router import review
from services.router.classifier import classify
from services.router.evolution.service import EvolutionService
from services.router.routing import fallback_route, rule_route
from services.router.settings import RouterSettings
from services.router.state import TaskStore, ThreadStore, set_status
from services.router.threads import JOB_BUDGET, Threads, fit
from shared import registry, subjects
from shared.agent import AgentRuntime
from shared.bus import (
    MAX_PAYLOAD_ECHO,
    consumer,
    ensure_jetstream,
    jetstream,
    js_stream,
    make_broker,
    publish_durable,
)
from shared.contracts import (
    FINAL_STATUSES,
    AgentJob,
    CancelRequest,
    DeadLetter,
    ErrorInfo,
    MaxDeliveriesAdvisory,
    ReviewDecision,
    StepRecord,
    StepResult,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskSubmit,
    ThreadTurn,
)
from shared.errors import NotFound, Overloaded, SyndicateError, Undeliverable
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app, publish_event
from shared.telemetry import current_trace_id

settings = RouterSettings()
log = setup_logging("router", settings.log_level, settings.log_json)
broker = make_broker("router", settings)
runtime = ServiceRuntime("router", settings)
app = create_app(runtime, broker)
deadlines: dict[str, float] = {}
early_cancels: dict[str, tuple[float, str]] = {}  # task id -> (when, reason) of cancels that came first
EARLY_CANCEL_TTL_S = 600.0
awaiting: set[str] = set()  # tasks this router saw pause for review (health: syndicate status)
AWAITING_CHECK_S = 30.0  # how often that set is checked against the KV (another replica may decide)
tracer = trace.get_tracer("syndicate.router")
classifier = AgentRuntime("router", broker, runtime)  # the small routing model, when enabled
evolution = EvolutionService(broker, log)  # kind="evolve" tasks: runs owned (and resumed) by routers


@app.on_startup
async def startup() -> None:
    await ensure_jetstream(broker, task_retention_s=settings.task_retention_s)
    js = jetstream(broker)
    store = TaskStore(await js.key_value(subjects.TASK_STATE_BUCKET))
    app.context.set_global("store", store)
    app.context.set_global("threads", Threads(ThreadStore(await js.key_value(subjects.THREAD_BUCKET)), store))
    for state in await store.active():  # resume deadline tracking (paused tasks too) after a restart
        deadlines[state.task.task_id] = state.task.submitted_at + state.task.timeout_s
        if state.status == "input_required":
            awaiting.add(state.task.task_id)
    runtime.details["awaiting_review"] = len(awaiting)
    app.context.set_global("sweeper", asyncio.create_task(sweep_deadlines(store)))
    await evolution.start()
    if settings.router_classifier:
        try:
            await classifier.load(settings)
            await classifier.serve_model()  # its model answers model requests too
            runtime.details["classifier"] = runtime.model
        except Exception as exc:  # rules still route every task
            log.warning("classifier model unavailable, routing by rules only", error=str(exc))
            runtime.details["classifier"] = f"off ({exc})"
    else:
        runtime.details["classifier"] = "off"


async def choose_route(task: TaskSubmit, history: list[ThreadTurn]) -> list[str]:
    """A follow-up goes to the agent that answered the turn before it (unless the task says
    otherwise); else rules first, the JSON-schema classifier for what they leave open, then
    a fallback."""
    if history and history[-1].agent and task.kind == "auto" and task.agent is None:
        return [history[-1].agent]
    route = rule_route(task)
    if route is None and classifier.engine is not None:
        route = await classify(classifier.engine, task, deadline=task.submitted_at + task.timeout_s)
    return route or fallback_route(task)


@broker.subscriber(
    subjects.TASK_SUBMIT, stream=js_stream(subjects.TASKS_STREAM), durable=subjects.ROUTER_TASKS_DURABLE,
    pull_sub=PullSub(timeout=1.0), config=consumer(subjects.ROUTER_TASKS_DURABLE, ack_wait_s=30),
)
async def on_task(task: TaskSubmit, store: TaskStore = Context(), threads: Threads = Context()) -> None:
    if task.kind == "evolve":
        await evolution.accept(task)
        return
    existing = await store.get(task.task_id)
    if existing is not None and existing.status not in ("queued", "routed"):
        return  # redelivered submit of a task already running or finished (or cancelled while queued)
    fresh = existing is None or existing.status == "queued"  # only its submitter's record so far
    if fresh and len(deadlines) >= settings.max_active_tasks:
        await reject(store, task)
        return
    history: list[ThreadTurn] | None = None
    if fresh:
        queued = existing.history if existing is not None else []
        state = TaskState(task=task, status="routed", trace_id=current_trace_id(),
                          history=[*queued, ("routed", time.time())])
        placed = await threads.place(state)
        if placed.error:
            await refuse(store, task, "failed", NotFound(placed.error))
            return
        state.thread_id, state.follows = placed.thread_id, placed.follows
        history = await threads.history(state)
        state.route = await choose_route(task, history)
        state.steps = [StepRecord(step_id=f"{task.task_id}.1", agent=state.route[0])]
        if not await store.claim(state):
            return
        log.info("task routed", task_id=task.task_id, route=state.route, thread=state.thread_id, follows=state.follows)
        await publish_event(broker, TaskEvent(task_id=task.task_id, type="status", status="routed",
                                              text=" → ".join(state.route)))
    else:
        assert existing is not None
        state = existing  # crashed between routing and dispatch: dispatch again (deduplicated)
    await threads.record(state)  # the task joins its thread (idempotent)
    if early := early_cancels.pop(task.task_id, None):
        await end_task(store, task.task_id, "cancelled", early[1])
        return
    await dispatch(store, state, state.steps[0], context="", history=history)


async def reject(store: TaskStore, task: TaskSubmit) -> None:
    """Back-pressure: the task ends `rejected` at once, with the reason for its submitter."""
    err = Overloaded(
        f"the syndicate is at its limit of {settings.max_active_tasks} active tasks; "
        "retry later (SYNDICATE_MAX_ACTIVE_TASKS sets the limit)"
    )
    if await refuse(store, task, "rejected", err, {"active": len(deadlines)}):
        log.warning("task rejected", task_id=task.task_id, active=len(deadlines))


async def refuse(store: TaskStore, task: TaskSubmit, status: str, err: SyndicateError,
                 detail: dict[str, object] | None = None) -> bool:
    """End a task that never ran at once, with the reason for its submitter (False: it
    exists already, a redelivered submit)."""
    result = TaskResult(
        task_id=task.task_id, trace_id=current_trace_id(), status=status,  # type: ignore[arg-type]
        kind="code" if task.kind == "code" else "reason",
        error=ErrorInfo(code=err.code, message=err.message, detail=detail or {}), submitted_at=task.submitted_at,
    )
    state = TaskState(task=task, status=status, trace_id=result.trace_id, result=result,  # type: ignore[arg-type]
                      history=[(status, time.time())])
    if not await store.claim(state):
        return False
    await finish(state)
    return True


async def dispatch(store: TaskStore, state: TaskState, step: StepRecord, context: str,
                   history: list[ThreadTurn] | None = None) -> None:
    """Publish ``step``'s job (with the thread's earlier turns; a revision step with the
    task's review rounds and the reviewer's feedback as its request) and mark it running."""
    task = state.task
    deadline = task.submitted_at + task.timeout_s
    threads: Threads = app.context.get("threads")
    thread = await threads.history(state) if history is None else history
    text = task.text
    if (revision := review.revision_job(state, step.step_id)) is not None:
        text, rounds = revision
        thread, context = fit(thread + rounds, JOB_BUDGET), ""
    job = AgentJob(
        task_id=task.task_id, step_id=step.step_id, agent=step.agent, text=text,  # type: ignore[arg-type]
        files=task.files, collection=task.collection, context=context, deadline=deadline, max_tokens=task.max_tokens,
        thread=thread,
    )
    deadlines[task.task_id] = deadline
    await publish_durable(broker, job, subjects.job_subject(step.agent), stream=subjects.JOBS_STREAM, msg_id=step.step_id)

    def running(s: TaskState) -> bool:
        changed = False
        for rec in s.steps:
            if rec.step_id == step.step_id and rec.status == "queued":
                rec.status, rec.started_at, changed = "running", time.time(), True
        if s.status not in FINAL_STATUSES and s.status != "running":
            set_status(s, "running")
            changed = True
        return changed

    await store.mutate(task.task_id, running)
    await publish_event(broker, TaskEvent(task_id=task.task_id, type="status", status="running", step=step.agent))


@broker.subscriber(
    subjects.STEP_RESULT, stream=js_stream(subjects.JOBS_STREAM), durable=subjects.ROUTER_RESULTS_DURABLE,
    pull_sub=PullSub(timeout=1.0), config=consumer(subjects.ROUTER_RESULTS_DURABLE, ack_wait_s=30),
)
async def on_step_result(res: StepResult, store: TaskStore = Context()) -> None:
    outcome: dict[str, object] = {}

    def record(state: TaskState) -> bool:
        step = next((s for s in state.steps if s.step_id == res.step_id), None)
        if step is None or step.status in FINAL_STATUSES or state.status in FINAL_STATUSES:
            # A duplicate result, or the task already ended (cancel, timeout). When this
            # result's follow-up step is recorded but still queued, the router died before
            # dispatching it: dispatch it now (the job is deduplicated by its step id).
            if state.status not in FINAL_STATUSES and step is not None and step.status == "done":
                idx = state.steps.index(step)
                if idx + 1 < len(state.steps) and state.steps[idx + 1].status == "queued":
                    outcome["next"] = state.steps[idx + 1]
            return False
        step.status, step.finished_at, step.error = res.status, time.time(), res.error
        if res.status == "done" and len(state.steps) < len(state.route):
            nxt = StepRecord(step_id=f"{state.task.task_id}.{len(state.steps) + 1}", agent=state.route[len(state.steps)])
            state.steps.append(nxt)
            outcome["next"] = nxt
        elif review.wants_review(state, res.status):
            outcome["paused"] = review.pause(state, result_from_step(state, res), res.step_id)
        else:
            state.result = result_from_step(state, res)
            set_status(state, state.result.status)
            outcome["final"] = state.result
        return True

    state = await store.mutate(res.task_id, record)
    if state is None:
        return
    if nxt := outcome.get("next"):
        await dispatch(store, state, nxt, context=res.answer)  # type: ignore[arg-type]
    elif "paused" in outcome:
        await announce_pause(store, state)
    elif "final" in outcome:
        await finish(state)


def result_from_step(state: TaskState, res: StepResult) -> TaskResult:
    return TaskResult(
        task_id=state.task.task_id, trace_id=state.trace_id, status=res.status,
        kind=registry.kind_of_agent(state.route[-1]),  # type: ignore[arg-type]
        answer=res.answer, code=res.code, tests=res.tests, attempts=res.attempts, citations=res.citations,
        files=res.files, diff=res.diff, checks=res.checks, error=res.error, usage=res.usage,
        submitted_at=state.task.submitted_at, thread_id=state.thread_id, unverified=res.unverified,
    )


async def announce_pause(store: TaskStore, state: TaskState) -> None:
    """The task waits for a person: its trace gets an ``input_required`` span (a decision's
    trace continues under it), its thread the proposed turn, its followers the event."""
    threads: Threads = app.context.get("threads")
    task_id, n = state.task.task_id, state.review[-1].n
    with tracer.start_as_current_span("task input_required", context=review.in_task_trace(state), attributes={
        "syndicate.task_id": task_id, "syndicate.status": "input_required", "syndicate.review.round": n,
    }) as span:
        span_id = format(span.get_span_context().span_id, "016x")

        def mark(s: TaskState) -> bool:
            rnd = next((r for r in s.review if r.n == n), None)
            if rnd is None or rnd.span_id:
                return False
            rnd.span_id = span_id
            return True

        state = await store.mutate(task_id, mark) or state
        awaiting.add(task_id)
        runtime.details["awaiting_review"] = len(awaiting)
        await threads.record(state)
        log.info("task waits for review", task_id=task_id, round=n)
        await publish_event(broker, TaskEvent(
            task_id=task_id, type="status", status="input_required", step=state.route[-1], result=state.result,
            text=f"waiting for review (round {n}): syndicate review {task_id} --approve | --revise FEEDBACK | --reject",
        ))


@broker.subscriber(
    subjects.TASK_REVIEW, stream=js_stream(subjects.TASKS_STREAM), durable=subjects.ROUTER_REVIEWS_DURABLE,
    pull_sub=PullSub(timeout=1.0), config=consumer(subjects.ROUTER_REVIEWS_DURABLE, ack_wait_s=30),
)
async def on_review(decision: ReviewDecision, store: TaskStore = Context()) -> None:
    """A person's decision on a paused task: approve or reject ends it, revise dispatches
    one more step to the agent that answered (then the task pauses again)."""
    outcome = review.Decided()
    state = await store.mutate(decision.task_id, lambda s: review.decide(s, decision, outcome))
    if state is None:
        log.warning("review of an unknown task", task_id=decision.task_id)
        return
    if outcome.note:
        log.info("review decision not applied", task_id=decision.task_id, reason=outcome.note)
        await publish_event(broker, TaskEvent(task_id=decision.task_id, type="progress",
                                              text=f"review decision not applied: {outcome.note}"))
        return
    awaiting.discard(decision.task_id)
    runtime.details["awaiting_review"] = len(awaiting)
    if outcome.revision is not None:
        log.info("task revised after review", task_id=decision.task_id, step_id=outcome.revision.step_id)
        await dispatch(store, state, outcome.revision, context="")
    elif outcome.final is not None:
        await finish(state)


async def end_task(store: TaskStore, task_id: str, status: str, reason: str, code: str | None = None) -> bool:
    """Move a task to a final status (cancelled/timeout/failed) unless it already ended;
    True when this call ended it."""
    ended: list[TaskState] = []

    def end(state: TaskState) -> bool:
        if state.status in FINAL_STATUSES:
            return False
        for step in state.steps:
            if step.status not in FINAL_STATUSES:
                step.status, step.finished_at = status, time.time()  # type: ignore[assignment]
        state.result = TaskResult(
            task_id=task_id, trace_id=state.trace_id, status=status,  # type: ignore[arg-type]
            kind=registry.kind_of_agent(state.route[-1]) if state.route  # type: ignore[arg-type]
            else "code" if state.task.kind == "code" else "reason",  # ended while queued
            error=ErrorInfo(code=code or status, message=reason), submitted_at=state.task.submitted_at,
        )
        if state.review:
            state.result.review = list(state.review)
        set_status(state, status)
        ended.append(state)
        return True

    final = await store.mutate(task_id, end)
    if ended and final is not None:
        await finish(final)
    return bool(ended)


async def finish(state: TaskState) -> None:
    """A task ended: stop its deadline, count it, bring its thread turn up to date, then
    tell its followers (the turn first, so a follow-up sent on the result sees it ended)."""
    result = state.result
    assert result is not None
    deadlines.pop(result.task_id, None)
    if result.task_id in awaiting:
        awaiting.discard(result.task_id)
        runtime.details["awaiting_review"] = len(awaiting)
    runtime.metrics.observe_task(result.kind, result.status, max(0.0, result.finished_at - result.submitted_at))
    log.info("task finished", task_id=result.task_id, status=result.status)
    threads: Threads | None = app.context.get("threads")
    if threads is not None:
        await threads.record(state)
    await publish_event(broker, TaskEvent(task_id=result.task_id, type="result", status=result.status, result=result))


@app.on_shutdown
async def shutdown() -> None:
    await evolution.stop()
    await classifier.stop_jobs()  # running model requests end with an error event


@broker.subscriber(subjects.TASK_CANCEL)
async def on_cancel(req: CancelRequest, store: TaskStore = Context()) -> None:
    if req.reason == "deadline":
        return
    if await store.get(req.task_id) is None:
        # The cancel (core NATS) overtook its task (JetStream): remember it for intake.
        early_cancels[req.task_id] = (time.time(), req.reason)
        for task_id, (at, _) in list(early_cancels.items()):
            if at < time.time() - EARLY_CANCEL_TTL_S:
                early_cancels.pop(task_id, None)
    await end_task(store, req.task_id, "cancelled", req.reason)


async def sweep_deadlines(store: TaskStore) -> None:
    checked = time.monotonic()
    while True:
        await asyncio.sleep(settings.deadline_sweep_s)
        if time.monotonic() - checked > AWAITING_CHECK_S:  # decided through another replica?
            checked = time.monotonic()
            for task_id in list(awaiting):
                if (state := await store.get(task_id)) is None or state.status != "input_required":
                    awaiting.discard(task_id)
            runtime.details["awaiting_review"] = len(awaiting)
        now = time.time()
        for task_id, deadline in list(deadlines.items()):
            if now > deadline:
                deadlines.pop(task_id, None)
                await end_task(store, task_id, "timeout", "task passed its deadline")
                # Tell the agents to stop generating for it.
                await broker.publish(CancelRequest(task_id=task_id, reason="deadline"), subjects.TASK_CANCEL)


@broker.subscriber(subjects.max_deliveries_advisory(), queue="router-advisories")
async def on_max_deliveries(advisory: MaxDeliveriesAdvisory, store: TaskStore = Context()) -> None:
    """A message was delivered ``max_deliver`` times without an ack: keep it as a dead
    letter and end its task ``failed`` with the reason (nobody would ever finish it)."""
    js = jetstream(broker)
    try:
        raw = await js.get_msg(advisory.stream, advisory.stream_seq)
    except nats.js.errors.NotFoundError:
        return  # already handled by another router, or aged out
    data = raw.data or b""
    subject = raw.subject or "unknown"
    reason = (f"{subject} was delivered {advisory.deliveries} times to {advisory.consumer} without being "
              "finished (the worker crashed or timed out each time)")
    letter = DeadLetter(source=subject, reason=f"{Undeliverable.code}: {reason}",
                        payload=data[:MAX_PAYLOAD_ECHO].decode("utf-8", "replace"))
    await publish_durable(broker, letter, subjects.dead_letter(subject.replace(".", "_")),
                          stream=subjects.DEAD_LETTER_STREAM, msg_id=f"maxdeliver.{advisory.stream}.{advisory.stream_seq}")
    log.error("message undeliverable", subject=subject, consumer=advisory.consumer, deliveries=advisory.deliveries)
    await fail_task_of(store, subject, data, reason)
    if advisory.stream in (subjects.TASKS_STREAM, subjects.INGEST_STREAM, subjects.EVAL_STREAM):
        with contextlib.suppress(nats.js.errors.NotFoundError):  # work queue: free its slot
            await js.delete_msg(advisory.stream, advisory.stream_seq)


async def fail_task_of(store: TaskStore, subject: str, data: bytes, reason: str) -> None:
    """End the task an undeliverable message belongs to ``failed`` (code ``undeliverable``)."""
    models: dict[str, type[TaskSubmit | AgentJob | StepResult]] = {
        subjects.TASK_SUBMIT: TaskSubmit, subjects.STEP_RESULT: StepResult,
        **dict.fromkeys(registry.job_subjects(), AgentJob),
    }
    model = models.get(subject)
    if model is None:
        return  # ingest / eval work: the dead letter is the record
    try:
        msg = model.model_validate_json(data)
    except ValidationError:
        return  # an invalid payload was dead-lettered by the consumer itself
    if isinstance(msg, TaskSubmit) and await refuse(store, msg, "failed", Undeliverable(reason)):
        return  # it never got past the queue
    await end_task(store, msg.task_id, "failed", reason, code=Undeliverable.code)
