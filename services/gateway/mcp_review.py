"""Review in MCP's ``solve``: a task submitted with ``review`` asks the client's user to
decide (elicitation) when it pauses in input_required.

Clients of the 2026-07-28 protocol get an ``InputRequiredResult`` (the tool call returns;
the client answers and calls ``solve`` again, its answer keyed by the task and round, so
any gateway replica resumes it from the task's record); older session clients get an
``elicitation/create`` request in the middle of the call. A client without elicitation,
or one that dismisses the question, gets the proposed result with status
``input_required``: the task stays paused for ``syndicate review`` or the HTTP API.
"""

from __future__ import annotations

import re
from typing import Literal

from mcp.server.elicitation import (
    AcceptedElicitation,
    DeclinedElicitation,
    render_elicitation_schema,
)
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, ValidationError

from shared.contracts import MAX_FEEDBACK, TaskResult

INPUT_REQUIRED_VERSION = "2026-07-28"  # from this protocol on, elicitation rides InputRequiredResult
KEY = re.compile(r"review\.([A-Za-z0-9_-]{1,64})\.(\d+)")
SHOWN = 4_000  # characters of the proposed answer in the question


class ReviewForm(BaseModel):
    """What the user is asked: the decision, and for a revision what to change."""

    decision: Literal["approve", "revise", "reject"] = Field(
        description="approve: accept the answer; revise: one more round with your feedback; reject: refuse it")
    feedback: str = Field("", max_length=MAX_FEEDBACK, description="revise: what to change; reject: why")


def key_of(result: TaskResult) -> str:
    """The input request's key: the task and the round it answers."""
    return f"review.{result.task_id}.{result.review[-1].n if result.review else 1}"


def question(result: TaskResult) -> str:
    """The proposed answer with its evidence, and what to decide."""
    held = [c for c in result.checks if c.held]
    evidence = [f"{t.name}: {t.status}" for t in result.tests]
    if held:
        evidence.append(f"{len(held)} checks hold")
    answer = result.answer if len(result.answer) <= SHOWN else result.answer[:SHOWN] + " …"
    return (f"Task {result.task_id} waits for your review.\n\n{answer}\n\n"
            + (f"Evidence: {'; '.join(evidence)}.\n\n" if evidence else "")
            + "Approve it, reject it, or say what to change (revise).")


def can_elicit(ctx: Context) -> bool:
    """Whether the client declared form elicitation."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def modern(ctx: Context) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION)


def answered(ctx: Context) -> tuple[str, ElicitResult] | None:
    """On a client's retry: the task it answers and its answer."""
    for key, answer in (ctx.input_responses or {}).items():
        if (m := KEY.fullmatch(key)) and isinstance(answer, ElicitResult):
            return m.group(1), answer
    return None


def decision_of(answer: ElicitResult) -> tuple[str, str] | None:
    """(decision, feedback) of an answer; None when the user dismissed the question."""
    if answer.action == "decline":
        return "reject", "declined by the MCP client's user"
    if answer.action != "accept":
        return None
    try:
        form = ReviewForm.model_validate(answer.content or {})
    except ValidationError as exc:
        raise ToolError(f"the review answer does not match its form: {exc.errors()[0]['msg']}") from exc
    return form.decision, form.feedback


async def ask(ctx: Context, result: TaskResult) -> tuple[str, str] | InputRequiredResult | None:
    """Ask the client's user about a paused task: the decision (older clients, mid-call),
    an InputRequiredResult to return (2026 clients), or None (no elicitation, or dismissed)."""
    if not can_elicit(ctx):
        return None
    if modern(ctx):
        form = ElicitRequestFormParams(message=question(result), requested_schema=render_elicitation_schema(ReviewForm))
        return InputRequiredResult(input_requests={key_of(result): ElicitRequest(params=form)})
    try:
        outcome = await ctx.elicit(question(result), ReviewForm)
    except ValueError as exc:  # accepted with content that does not fit the form
        raise ToolError(f"the review answer does not match its form: {exc}") from exc
    if isinstance(outcome, AcceptedElicitation):
        return outcome.data.decision, outcome.data.feedback
    if isinstance(outcome, DeclinedElicitation):
        return "reject", "declined by the MCP client's user"
    return None
