"""A2A messages and tasks as the syndicate's contracts, and back.

An A2A message becomes one ``TaskSubmit``: its text parts are the task text, parts with a
filename are files, and the message's (or request's) metadata may name a ``collection``,
``max_tokens``, ``timeout_s`` or ``review``. A task is rebuilt from the task-state KV
alone (the TaskSubmit, its status and result), so any gateway replica answers
``GetTask``. The result's parts become artifacts: ``answer`` (text), ``code``, ``tests``,
``files``, ``diff``, ``checks`` and ``citations``.

Conversations: messages with the same ``contextId`` are one thread (each continues the
last task of it that ended); ``referenceTaskIds`` names the task to continue instead.
Review: a task sent with ``review: true`` reports ``input-required`` with the proposed
artifacts; a message carrying that task's ``taskId`` decides it (``decision_of``).
"""

from __future__ import annotations

from typing import Any

from a2a.helpers.proto_helpers import new_data_artifact, new_text_artifact, new_text_message
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from shared import registry
from shared.contracts import TaskResult, TaskSubmit
from shared.contracts import TaskState as SyndicateState

STATES: dict[str, int] = {
    "queued": TaskState.TASK_STATE_SUBMITTED, "routed": TaskState.TASK_STATE_WORKING,
    "running": TaskState.TASK_STATE_WORKING, "done": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED, "timeout": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED, "rejected": TaskState.TASK_STATE_REJECTED,
    "input_required": TaskState.TASK_STATE_INPUT_REQUIRED,
}
OPTIONS = ("collection", "max_tokens", "timeout_s", "review")  # metadata keys a message may set
APPROVE = frozenset({"approve", "approved", "accept", "yes", "ok", "lgtm"})


def to_submit(message: Message, request_metadata: dict[str, Any], agent: str | None, timeout_s: float) -> TaskSubmit:
    """The task an A2A message asks for (InvalidParamsError / ContentTypeNotSupportedError
    naming what is wrong)."""
    if message.task_id:
        raise InvalidParamsError("only a task waiting in input-required takes another message (its review decision); "
                                 "send a new message (a new task, in the same contextId to continue) instead")
    texts: list[str] = []
    files: list[dict[str, str]] = []
    for n, part in enumerate(message.parts):
        content = part.WhichOneof("content")
        if content == "text" and not part.filename:
            texts.append(part.text)
        elif content in ("text", "raw") and part.filename:
            body = part.text if content == "text" else _utf8(part.raw, part.filename)
            files.append({"path": part.filename, "content": body})
        else:
            raise ContentTypeNotSupportedError(
                f"part {n} ({content or 'empty'}): the syndicate takes text parts and files (text or raw with a filename)")
    options = {**request_metadata, **(MessageToDict(message.metadata) if message.HasField("metadata") else {})}
    fields = {k: options[k] for k in OPTIONS if k in options}
    kind = registry.agents()[agent].task_kind if agent else "auto"
    try:
        return TaskSubmit.model_validate({
            "text": "\n".join(texts).strip(), "files": files, "agent": agent,
            "kind": kind or "auto", "timeout_s": timeout_s, "context_id": message.context_id or None,
            "follows": message.reference_task_ids[-1] if message.reference_task_ids else None, **fields,
        })
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise InvalidParamsError(f"the message is not a task the syndicate takes: {problems}"[:2000]) from exc


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentTypeNotSupportedError(f"file {name}: only UTF-8 text files are taken") from exc


def context_of(task: TaskSubmit) -> str:
    """The task's A2A context: the caller's, or the task id when it named none."""
    return task.context_id or task.task_id


def status(state: str, text: str = "", *, task: TaskSubmit, at: float | None = None) -> TaskStatus:
    stamp = Timestamp()
    if at is not None:
        stamp.FromNanoseconds(int(at * 1e9))
    else:
        stamp.GetCurrentTime()
    out = TaskStatus(state=STATES[state], timestamp=stamp)  # type: ignore[arg-type]
    if text:
        out.message.CopyFrom(new_text_message(text, context_id=context_of(task), task_id=task.task_id))
    return out


def result_text(result: TaskResult) -> str:
    """What the status message says: the answer, or why there is none (while it waits
    for a review: the proposed answer and how to decide)."""
    if result.status == "done":
        return result.answer
    if result.status == "input_required":
        return f"{result.answer}\n\n{REVIEW_ASK}"
    return f"{result.status}: {result.error.message}" if result.error else result.status


REVIEW_ASK = ("This answer waits for your review. Reply in this task with \"approve\", \"reject: why\", or what "
              "to change (metadata decision: approve | revise | reject).")


def decision_of(message: Message, request_metadata: dict[str, Any]) -> tuple[str, str]:
    """The review decision a message in a paused task carries, with its feedback: the
    metadata's ``decision`` when given, else its text: "approve" (or yes, ok, lgtm),
    "reject[: why]", or anything else as what to change."""
    text = "\n".join(p.text for p in message.parts if p.WhichOneof("content") == "text").strip()
    options = {**request_metadata, **(MessageToDict(message.metadata) if message.HasField("metadata") else {})}
    if (decision := options.get("decision")) is not None:
        if decision not in ("approve", "revise", "reject"):
            raise InvalidParamsError(f"decision must be approve, revise or reject, not {decision!r}")
        return str(decision), text
    word = text.lower().strip(" .!")
    if word in APPROVE:
        return "approve", ""
    if word.startswith("reject"):
        return "reject", text[len("reject"):].lstrip(" :,-")
    if not text:
        raise InvalidParamsError("a review decision needs a text: approve, reject, or what to change")
    return "revise", text


def artifacts(result: TaskResult) -> list[Artifact]:
    """The result's parts as artifacts (only those the result has)."""
    out = [new_text_artifact("answer", result.answer, media_type="text/plain", artifact_id="answer")] if result.answer else []
    if result.code:
        out.append(new_text_artifact("code", result.code, media_type="text/x-python", artifact_id="code"))
    if result.tests:
        out.append(new_data_artifact("tests", {"runs": [t.model_dump() for t in result.tests]}, artifact_id="tests",
                                     description="code-sandbox verdicts of the tests the code passed"))
    if result.files:
        parts = [Part(text=f.content, filename=f.path, media_type="text/plain") for f in result.files]
        out.append(Artifact(artifact_id="files", name="files", description="edited files", parts=parts))
    if result.diff:
        out.append(new_text_artifact("diff", result.diff, media_type="text/x-diff", artifact_id="diff"))
    if result.checks:
        out.append(new_data_artifact("checks", {"checks": [c.model_dump() for c in result.checks]}, artifact_id="checks",
                                     description="each check of the code, where it came from (this task or an earlier "
                                                 "one of the thread) and whether the code holds it"))
    if result.citations:
        out.append(new_data_artifact("citations", {"citations": [c.model_dump() for c in result.citations]},
                                     artifact_id="citations", description="the passages the answer stands on"))
    return out


def user_message(task: TaskSubmit) -> Message:
    msg = new_text_message(task.text, context_id=context_of(task), task_id=task.task_id, role=Role.ROLE_USER)
    msg.message_id = f"{task.task_id}.in"  # stable: the same task read twice is the same message
    msg.parts.extend(Part(text=f.content, filename=f.path) for f in task.files)
    return msg


def task_of(state: SyndicateState, history_length: int | None = None) -> Task:
    """The A2A task of a task-state record."""
    submit, result = state.task, state.result
    note = result_text(result) if result is not None else (state.route and f"{state.status}: {' → '.join(state.route)}") or ""
    out = Task(id=submit.task_id, context_id=state.thread_id or context_of(submit),
               status=status(state.status, note, task=submit, at=state.updated_at))
    if result is not None:
        out.artifacts.extend(artifacts(result))
    if history_length != 0:
        out.history.append(user_message(submit))
    out.metadata.update({"trace_id": state.trace_id, "route": list(state.route)})
    if state.thread_id:
        out.metadata.update({"thread_id": state.thread_id})
    if state.review:
        out.metadata.update({"review_round": state.review[-1].n})
    if result is not None and result.unverified:  # done, but no check the task stated stands behind it
        out.metadata["unverified"] = True
    return out
