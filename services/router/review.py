"""Review: a task submitted with ``review`` pauses before its final answer, in status
``input_required`` with the proposed result (answer, code and its evidence), until a
person decides: approve (the proposed result becomes final, ``done``), reject (the task
ends ``rejected``, code ``review_rejected``) or revise (one more step by the same agent,
which sees its proposed answer and the feedback, then the task pauses again).

Everything here changes a ``TaskState`` inside a compare-and-set, so the pause, each
decision and the revision step are in the KV before anything is published: a router
killed at any point resumes from the record (the paused task keeps its deadline, the
sweeper of any replica ends it at the deadline).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.router.state import set_status
from services.router.threads import turn_of
from shared.contracts import (
    ErrorInfo,
    ReviewDecision,
    ReviewRound,
    StepRecord,
    TaskResult,
    TaskState,
    ThreadTurn,
)
from shared.errors import ReviewRejected

REVISION_REQUEST = "Revise your last answer. The reviewer's feedback: {feedback}"


def wants_review(state: TaskState, step_status: str) -> bool:
    """Whether a last step that ended ``step_status`` pauses the task (only a done answer
    waits for a person; failures, cancels and timeouts end it as before)."""
    return state.task.review and step_status == "done"


def pause(state: TaskState, proposed: TaskResult, step_id: str) -> TaskResult:
    """Record the proposed result and a new review round; the task waits in input_required."""
    rounds = state.review
    text = state.task.text if not rounds else revision_text(rounds[-1].feedback)
    paused = proposed.model_copy(update={"status": "input_required"})
    rounds.append(ReviewRound(n=len(rounds) + 1, step_id=step_id, proposed=turn_of(state, paused, text=text)))
    paused.review = list(rounds)
    state.result = paused
    set_status(state, "input_required")
    return paused


@dataclass
class Decided:
    """What a decision led to: the final result, a revision step to dispatch, or nothing
    (``note`` says why it was not applied)."""

    final: TaskResult | None = None
    revision: StepRecord | None = None
    note: str = ""


def decide(state: TaskState, decision: ReviewDecision, outcome: Decided) -> bool:
    """Apply ``decision`` to a paused task (fills ``outcome``; False: nothing to write).

    A redelivered decision that was applied already gives its revision step again when
    that step is still queued (the router died before dispatching it)."""
    applied = next((r for r in state.review if r.decision_id == decision.decision_id), None)
    if applied is not None:
        step = next((s for s in state.steps if s.step_id == applied.revision_step), None)
        if step is not None and step.status == "queued" and state.status == "running":
            outcome.revision = step
        return False
    current = state.review[-1] if state.review else None
    if state.status != "input_required" or current is None or current.decision is not None:
        outcome.note = f"the task is not waiting for a review (status {state.status})"
        return False
    if decision.round is not None and decision.round != current.n:
        outcome.note = f"round {decision.round} is over; the task waits on round {current.n}"
        return False
    current.decision, current.feedback = decision.decision, decision.feedback
    current.reviewer, current.decided_at, current.decision_id = decision.reviewer, time.time(), decision.decision_id
    proposed = state.result
    assert proposed is not None
    if decision.decision == "revise":
        step = StepRecord(step_id=f"{state.task.task_id}.{len(state.steps) + 1}", agent=state.route[-1])
        state.steps.append(step)
        current.revision_step = step.step_id
        state.result = None
        set_status(state, "running")
        outcome.revision = step
        return True
    if decision.decision == "approve":
        final = proposed.model_copy(update={"status": "done", "finished_at": time.time()})
    else:
        why = decision.feedback.strip() or "no reason given"
        err = ReviewRejected(f"the reviewer rejected the answer: {why}")
        final = proposed.model_copy(update={"status": "rejected", "finished_at": time.time(),
                                            "error": ErrorInfo(code=err.code, message=err.message)})
    final.review = list(state.review)
    state.result = final
    set_status(state, final.status)
    outcome.final = final
    return True


def revision_text(feedback: str) -> str:
    return REVISION_REQUEST.format(feedback=feedback.strip())


def revision_job(state: TaskState, step_id: str) -> tuple[str, list[ThreadTurn]] | None:
    """For a revision step: the request it answers and the task's earlier rounds as turns
    (each proposed answer with the request it answered), else None."""
    for k, rnd in enumerate(state.review):
        if rnd.revision_step == step_id:
            return revision_text(rnd.feedback), [r.proposed for r in state.review[: k + 1]]
    return None


def in_task_trace(state: TaskState) -> otel_context.Context | None:
    """The current context when it is the task's trace (an agent carried it, as agents
    do), else one that puts a new span in the task's trace all the same."""
    current = trace.get_current_span().get_span_context()
    if not state.trace_id or (current.is_valid and format(current.trace_id, "032x") == state.trace_id):
        return None
    parent = SpanContext(int(state.trace_id, 16), random.getrandbits(64) | 1, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))
