"""Bus wiring shared by every service: a FastStream ``NatsBroker`` with trace-context
propagation, error replies instead of crashes, JetStream streams/KV, health and requests.

- Request/reply handlers that raise (invalid payload, QueueFull, ...) answer an
  ``ErrorReply``; JetStream messages that fail validation are dead-lettered and acked,
  so a bad message is never redelivered forever.
- ``ensure_jetstream`` declares every stream and the task-state bucket (idempotent).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import nats
from faststream import BaseMiddleware
from faststream.nats import JStream, NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from pydantic import BaseModel, ValidationError

from shared import subjects
from shared.contracts import DeadLetter, ErrorInfo, ErrorReply, HealthPing, HealthReply
from shared.errors import BusError, InvalidPayload, SyndicateError, error_from_code
from shared.settings import Settings
from shared.telemetry import setup_tracing

T = TypeVar("T", bound=BaseModel)

MAX_PAYLOAD_ECHO = 2_000  # bytes of a bad payload kept in its dead letter

# Retention: tasks and jobs are work queues (a message leaves once acked); results and
# dead letters age out. Task *state* lives in the KV bucket (see TASK_STATE_*).
STREAMS: dict[str, StreamConfig] = {
    subjects.TASKS_STREAM: StreamConfig(
        name=subjects.TASKS_STREAM, subjects=[subjects.TASK_SUBMIT],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        max_msgs=100_000, discard=DiscardPolicy.NEW, duplicate_window=120.0,
    ),
    subjects.JOBS_STREAM: StreamConfig(
        name=subjects.JOBS_STREAM, subjects=[f"{subjects.JOB_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=7 * 86_400.0, max_msgs=1_000_000, duplicate_window=120.0,
    ),
    subjects.INGEST_STREAM: StreamConfig(
        name=subjects.INGEST_STREAM, subjects=[subjects.INGEST_JOB],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, max_msgs=10_000,
    ),
    subjects.EVAL_STREAM: StreamConfig(
        name=subjects.EVAL_STREAM, subjects=[subjects.EVAL_RUN],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, max_msgs=10_000,
    ),
    subjects.DEAD_LETTER_STREAM: StreamConfig(
        name=subjects.DEAD_LETTER_STREAM, subjects=[f"{subjects.DEAD_LETTER}.>"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=30 * 86_400.0, max_msgs=100_000,
    ),
}
TASK_STATE_TTL_S = 7 * 86_400.0  # retention of task records (SYNDICATE_TASK_RETENTION_S overrides)
TASK_STATE_HISTORY = 1


def instance_id(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


class ErrorReplyMiddleware(BaseMiddleware):
    """Turns handler failures into protocol answers instead of crashes.

    Core request: reply with ErrorReply. JetStream message with an invalid payload:
    write a DeadLetter and ack. Other JetStream failures propagate (nack, redelivery,
    bounded by the consumer's max_deliver).
    """

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, SyndicateError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            err = to_error_info(exc)
            if not _is_jetstream(msg):
                return ErrorReply(error=err)  # core request: the caller gets the error
            if isinstance(exc, SyndicateError) and not isinstance(exc, InvalidPayload):
                raise
            broker = self.context.get("broker")
            source = getattr(msg.raw_message, "subject", "") or "unknown"
            letter = DeadLetter(
                source=source, reason=f"{err.code}: {err.message}",
                payload=bytes(msg.body[:MAX_PAYLOAD_ECHO]).decode("utf-8", "replace"),
            )
            if broker is not None:
                await broker.publish(letter, subjects.dead_letter(source.replace(".", "_")), stream=subjects.DEAD_LETTER_STREAM)
            return None


def _is_jetstream(msg: Any) -> bool:
    reply = getattr(msg.raw_message, "reply", "") or ""
    return str(reply).startswith("$JS.ACK")


def to_error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:5]
        )
        return ErrorInfo(code=InvalidPayload.code, message=f"invalid payload: {problems}")
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return ErrorInfo(code=InvalidPayload.code, message=f"invalid payload: not JSON ({exc})")
    if isinstance(exc, SyndicateError):
        return ErrorInfo(code=exc.code, message=exc.message, detail=exc.detail)
    return ErrorInfo(code="internal_error", message=f"{type(exc).__name__}: {exc}")


def make_broker(service: str, settings: Settings | None = None, *, telemetry: bool = True) -> NatsBroker:
    """A broker for ``service``: reconnects forever, propagates trace context, answers errors."""
    settings = settings or Settings()
    middlewares: list[Any] = [ErrorReplyMiddleware]
    if telemetry:
        provider = setup_tracing(service, settings)
        middlewares.insert(0, NatsTelemetryMiddleware(tracer_provider=provider))
    return NatsBroker(
        settings.nats_url,
        name=service,
        middlewares=middlewares,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=int(max(1, settings.connect_timeout_s)),
        logger=None,
    )


def js_stream(name: str) -> JStream:
    """Reference to a stream declared by ``ensure_jetstream`` (FastStream must not redeclare it)."""
    return JStream(name, declare=False)


def consumer(durable: str, *, ack_wait_s: float = 60.0, max_deliver: int = 5, max_ack_pending: int = 1000) -> ConsumerConfig:
    """Durable pull-consumer config: explicit acks, bounded redelivery."""
    return ConsumerConfig(
        durable_name=durable, ack_wait=ack_wait_s, max_deliver=max_deliver, max_ack_pending=max_ack_pending,
    )


async def ensure_jetstream(broker: NatsBroker, *, task_retention_s: float | None = None) -> None:
    """Declare every stream and the task-state KV bucket; safe to call from every process."""
    await broker.connect()
    js = broker.connection.jetstream()
    for cfg in STREAMS.values():
        try:
            await js.add_stream(config=cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config=cfg)
    ttl = task_retention_s or float(os.environ.get("SYNDICATE_TASK_RETENTION_S", TASK_STATE_TTL_S))
    try:
        await js.key_value(subjects.TASK_STATE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(bucket=subjects.TASK_STATE_BUCKET, history=TASK_STATE_HISTORY, ttl=ttl, storage=StorageType.FILE)
        )


def jetstream(broker: NatsBroker) -> Any:
    """The broker's nats-py JetStream context (for KV and stream admin FastStream lacks)."""
    return broker.connection.jetstream()


def add_health_responder(broker: NatsBroker, build: Callable[[], HealthReply]) -> None:
    """Every instance answers the HEALTH_PING broadcast (no queue group) with ``build()``."""

    @broker.subscriber(subjects.HEALTH_PING)
    async def _health(_: HealthPing) -> HealthReply:
        return build()


async def request(
    broker: NatsBroker, subject: str, payload: BaseModel, reply_type: type[T], *, timeout: float = 30.0,  # noqa: ASYNC109 - passed to the NATS request
) -> T:
    """Request/reply with typed answer; an ErrorReply becomes the matching SyndicateError."""
    try:
        msg = await broker.request(payload, subject, timeout=timeout)
    except TimeoutError as exc:
        raise BusError(f"no answer on {subject} within {timeout:.0f}s") from exc
    except Exception as exc:  # no responders, connection lost
        raise BusError(f"request on {subject} failed: {exc}") from exc
    data = json.loads(msg.body)
    if isinstance(data, dict) and "error" in data and set(data) <= {"version", "error"}:
        err = ErrorReply.model_validate(data).error
        raise error_from_code(err.code, err.message, err.detail)
    return reply_type.model_validate(data)


async def scatter(nc: nats.NATS, subject: str, payload: bytes, *, wait_s: float = 0.5) -> list[bytes]:
    """Publish once and gather every reply that arrives within ``wait_s`` (health pings)."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while (left := end - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            replies.append(msg.data)
    finally:
        await sub.unsubscribe()
    return replies
