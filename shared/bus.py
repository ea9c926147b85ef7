"""Bus wiring shared by every service: a FastStream ``NatsBroker`` with trace-context
propagation, error replies instead of crashes, JetStream streams/KV, health and requests.

- Request/reply handlers that raise (invalid payload, QueueFull, ...) answer an
  ``ErrorReply``; JetStream messages that fail validation are dead-lettered and acked,
  so a bad message is never redelivered forever.
- A JetStream handler that fails otherwise (KV unreachable during a bus restart or a
  cluster leader election, ...) naks its message with a growing delay: it is redelivered,
  bounded by the consumer's ``max_deliver``, and never terminated (FastStream's default
  would ``term`` it: the work would be lost).
- ``ensure_jetstream`` declares every stream and the task-state bucket (idempotent; waits
  for JetStream on a cluster that is still electing its leaders; replicas, retention and
  the task-queue bound come from the settings).
- ``make_broker`` takes one URL or a cluster's comma-separated list, with the process's
  NATS user, and reconnects forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import nats
from faststream import BaseMiddleware
from faststream.nats import JStream, NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.security import SASLPlaintext
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
from shared.contracts import (
    DeadLetter,
    ErrorInfo,
    ErrorReply,
    HealthPing,
    HealthReply,
    ReviewDecision,
    TaskState,
    TaskSubmit,
)
from shared.errors import BusError, InvalidPayload, Overloaded, SyndicateError, error_from_code
from shared.settings import Settings, url_credentials, without_credentials
from shared.telemetry import current_trace_id, setup_tracing

T = TypeVar("T", bound=BaseModel)

MAX_PAYLOAD_ECHO = 2_000  # bytes of a bad payload kept in its dead letter

# Retention: tasks and jobs are work queues (a message leaves once acked); results and
# dead letters age out. Task *state* lives in the KV bucket (see TASK_STATE_*).
STREAMS: dict[str, StreamConfig] = {
    subjects.TASKS_STREAM: StreamConfig(
        name=subjects.TASKS_STREAM, subjects=[subjects.TASK_SUBMIT, subjects.TASK_REVIEW],
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
NAK_DELAY_MAX_S = 10.0  # a failing JetStream message waits 1 s, 2 s, ... up to this before redelivery
JETSTREAM_READY_S = 60.0  # how long ensure_jetstream waits for a (clustered) JetStream to answer
log = logging.getLogger("syndicate.bus")


def stream_configs(settings: Settings | None = None, *, replicas: int = 1,
                   task_retention_s: float | None = None) -> dict[str, StreamConfig]:
    """STREAMS as this deployment wants them: replicas, job/result retention, task-queue bound.

    Job and step-result messages are a task's history: they age out with its state."""
    settings = settings or Settings()
    retention = task_retention_s or settings.task_retention_s
    out = {}
    for name, cfg in STREAMS.items():
        changes: dict[str, Any] = {"num_replicas": replicas}
        if name == subjects.TASKS_STREAM:
            changes["max_msgs"] = settings.task_queue_max
        if name == subjects.JOBS_STREAM:
            changes["max_age"] = retention
            changes["duplicate_window"] = min(cfg.duplicate_window or 120.0, retention)
        out[name] = dataclasses.replace(cfg, **changes)
    return out


def instance_id(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


class ErrorReplyMiddleware(BaseMiddleware):
    """Turns handler failures into protocol answers instead of crashes.

    Core request: reply with ErrorReply. JetStream message with an invalid payload:
    write a DeadLetter and ack. Other JetStream failures nak the message with a delay
    (redelivery, bounded by the consumer's max_deliver; the router turns exhaustion into
    a dead letter and a failed task).
    """

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, SyndicateError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            err = to_error_info(exc)
            if not _is_jetstream(msg):
                return ErrorReply(error=err)  # core request: the caller gets the error
            if isinstance(exc, SyndicateError) and not isinstance(exc, InvalidPayload):
                await nak_later(msg)
                raise
            broker = self.context.get("broker")
            source = getattr(msg.raw_message, "subject", "") or "unknown"
            letter = DeadLetter(
                source=source, reason=f"{err.code}: {err.message}",
                payload=bytes(msg.body[:MAX_PAYLOAD_ECHO]).decode("utf-8", "replace"),
            )
            if broker is not None:
                try:
                    meta = msg.raw_message.metadata
                    letter_id = f"invalid.{meta.stream}.{meta.sequence.stream}"  # one letter per message
                except Exception:
                    letter_id = f"invalid.{source}.{hash(bytes(msg.body))}"
                try:
                    await broker.publish(letter, subjects.dead_letter(source.replace(".", "_")),
                                         stream=subjects.DEAD_LETTER_STREAM, headers={"Nats-Msg-Id": letter_id})
                except Exception:
                    await nak_later(msg)  # the letter could not be written: try again later
                    raise
            with contextlib.suppress(Exception):  # subscribers with manual acks (agents' jobs) too
                await msg.ack()
            return None
        except Exception as exc:
            if _is_jetstream(msg):
                await nak_later(msg)
                raise
            # A core request whose handler broke: the caller gets a clear error now
            # instead of waiting for its timeout; the process keeps serving.
            log.exception("handler failed on %s", getattr(msg.raw_message, "subject", "?"))
            return ErrorReply(error=to_error_info(exc))


async def nak_later(msg: Any) -> None:
    """Nak a JetStream message so it comes back after 1 s, 2 s, 4 s ... (not at once:
    the cause, e.g. a bus restart, needs time to pass, and max_deliver is small)."""
    raw = msg.raw_message
    try:
        delivered = raw.metadata.num_delivered or 1
    except Exception:
        delivered = 1
    with contextlib.suppress(Exception):  # connection down: ack_wait expiry redelivers it
        await raw.nak(delay=min(NAK_DELAY_MAX_S, 2.0 ** (delivered - 1)))


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
    """A broker for ``service``: reconnects forever (to any node of a cluster), propagates
    trace context, answers errors."""
    settings = settings or Settings()
    middlewares: list[Any] = [ErrorReplyMiddleware]
    if telemetry:
        provider = setup_tracing(service, settings)
        middlewares.insert(0, NatsTelemetryMiddleware(tracer_provider=provider))
    servers = settings.nats_servers
    creds = url_credentials(servers)
    return NatsBroker(
        without_credentials(servers),  # FastStream takes credentials once, for every node
        security=SASLPlaintext(username=creds["user"], password=creds["password"]) if creds else None,
        name=service,
        middlewares=middlewares,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=int(max(1, settings.connect_timeout_s)),
        error_cb=_connection_error,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
        logger=None,
    )


_last_error: dict[str, float] = {}


async def _connection_error(exc: Exception) -> None:
    """One line per kind of connection error and minute (nats-py would print a traceback
    for every reconnect attempt while the bus is down)."""
    kind = type(exc).__name__
    now = time.monotonic()
    if now - _last_error.get(kind, -1e9) > 60:
        _last_error[kind] = now
        log.warning("nats connection error: %s: %s", kind, exc)


async def _disconnected() -> None:
    log.info("disconnected from NATS")  # also on a clean close: not a warning


async def _reconnected() -> None:
    log.warning("reconnected to NATS")


def js_stream(name: str) -> JStream:
    """Reference to a stream declared by ``ensure_jetstream`` (FastStream must not redeclare it)."""
    return JStream(name, declare=False)


def consumer(durable: str, *, ack_wait_s: float = 60.0, max_deliver: int = 5, max_ack_pending: int = 1000) -> ConsumerConfig:
    """Durable pull-consumer config: explicit acks, bounded redelivery.

    SYNDICATE_ACK_WAIT_S caps ``ack_wait``: how soon a dead worker's message goes to
    another (long jobs keep theirs with ``in_progress`` heartbeats at a third of it)."""
    return ConsumerConfig(
        durable_name=durable, ack_wait=ack_wait(ack_wait_s), max_deliver=max_deliver, max_ack_pending=max_ack_pending,
    )


def ack_wait(default_s: float) -> float:
    """``default_s`` capped by SYNDICATE_ACK_WAIT_S."""
    cap = Settings().ack_wait_s
    return min(default_s, cap) if cap else default_s


def heartbeat_s(default_s: float) -> float:
    """Interval of in_progress heartbeats: ``default_s``, or faster under a short ack_wait cap."""
    cap = Settings().ack_wait_s
    return min(default_s, cap / 3) if cap else default_s


async def ensure_jetstream(broker: NatsBroker, *, task_retention_s: float | None = None,
                           settings: Settings | None = None) -> None:
    """Declare every stream and the task-state KV bucket; safe to call from every process.

    Waits up to JETSTREAM_READY_S for JetStream to answer (a cluster elects its meta
    leader for a few seconds after it starts or loses a node)."""
    settings = settings or Settings()
    await broker.connect()
    nc = broker.connection
    end = time.monotonic() + JETSTREAM_READY_S
    while True:
        try:
            await _declare(nc, settings, task_retention_s)
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                nats.js.errors.NoStreamResponseError, nats.errors.ConnectionReconnectingError) as exc:
            if time.monotonic() > end:
                raise BusError(f"JetStream did not answer within {JETSTREAM_READY_S:.0f}s: {exc}") from exc
            await asyncio.sleep(0.5)
        except nats.js.errors.APIError as exc:
            # 10008: JetStream temporarily unavailable (no meta leader yet).
            if exc.err_code not in (10008, None) or time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


def stream_replicas(nc: nats.NATS, settings: Settings) -> int:
    """SYNDICATE_STREAM_REPLICAS, else 3 on a cluster of 3 or more nodes, else 1."""
    if settings.stream_replicas:
        return settings.stream_replicas
    info = getattr(nc, "_server_info", {}) or {}
    if info.get("cluster"):  # connect_urls: the client URLs of the nodes it knows so far
        return 3 if len(set(info.get("connect_urls") or [])) >= 3 else 1
    return 1


async def _declare(nc: nats.NATS, settings: Settings, task_retention_s: float | None) -> None:
    js = nc.jetstream()
    replicas = stream_replicas(nc, settings)
    ttl = task_retention_s or settings.task_retention_s
    for cfg in stream_configs(settings, replicas=replicas, task_retention_s=ttl).values():
        try:
            await js.add_stream(config=cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config=cfg)
    for bucket in (subjects.TASK_STATE_BUCKET, subjects.THREAD_BUCKET):  # threads keep the tasks' retention
        await _declare_bucket(js, bucket, ttl, replicas)


async def _declare_bucket(js: Any, bucket: str, ttl: float, replicas: int) -> None:
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except nats.js.errors.NotFoundError:
        await js.create_key_value(KeyValueConfig(
            bucket=bucket, history=TASK_STATE_HISTORY, ttl=ttl, storage=StorageType.FILE, replicas=replicas,
        ))
        return
    cfg = info.config
    if cfg.max_age != ttl or (cfg.num_replicas or 1) != replicas:  # the retention policy changed
        window = min(cfg.duplicate_window or ttl, ttl)  # JetStream: window <= max_age
        await js.update_stream(config=dataclasses.replace(cfg, max_age=ttl, num_replicas=replicas, duplicate_window=window))


async def publish_durable(broker: NatsBroker, message: BaseModel, subject: str, *, stream: str, msg_id: str,
                          retry_s: float = 60.0) -> None:
    """JetStream publish deduplicated by ``msg_id`` (Nats-Msg-Id), retried for up to
    ``retry_s`` through a bus restart or a cluster leader election. Retrying is safe: the
    stream stores one copy per id within its duplicate window."""
    loop = asyncio.get_running_loop()
    end = loop.time() + retry_s
    delay = 0.2
    while True:
        try:
            await broker.publish(message, subject, stream=stream, headers={"Nats-Msg-Id": msg_id}, timeout=5.0)
            return
        except nats.errors.MaxPayloadError:
            raise
        except Exception as exc:
            if loop.time() + delay > end:
                raise BusError(f"publish to {subject} failed: {exc or type(exc).__name__}") from exc
            log.warning("publish to %s failed (%s); retrying", subject, type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


STREAM_FULL = 10077  # JetStream API error: maximum messages exceeded (discard=new)


async def publish_task(broker: NatsBroker, task: TaskSubmit) -> None:
    """Submit a task to the TASKS stream (deduplicated by task id).

    Back-pressure: a full task queue (its ``max_msgs`` with discard=new) raises
    ``Overloaded`` with a message for the submitter; a task over the bus's max_payload
    raises ``InvalidPayload``; an unreachable bus raises ``BusError``.

    Once the stream holds it, the task is recorded ``queued`` in the task-state KV (unless
    the router has recorded it already), so whoever is handed its id — on any gateway
    replica, in any client — finds it from then on, before the router takes it."""
    await _publish_work(broker, task, subjects.TASK_SUBMIT, task.task_id, f"task {task.task_id}")
    if task.kind != "evolve":  # an evolution run keeps its own records (the evolve bucket)
        await _record_queued(broker, task)


async def _record_queued(broker: NatsBroker, task: TaskSubmit) -> None:
    """The submitter's record of a task the router has not taken yet (the router replaces
    it with its own: ``TaskStore.claim``). Best effort: the task is in the stream already,
    and the router records it when it takes it."""
    state = TaskState(task=task, status="queued", trace_id=current_trace_id(), history=[("queued", time.time())])
    try:
        kv = await broker.connection.jetstream().key_value(subjects.TASK_STATE_BUCKET)
        await kv.create(task.task_id, state.model_dump_json().encode())
    except nats.js.errors.KeyWrongLastSequenceError:
        pass  # the router took it first, or a retried submit
    except (TimeoutError, nats.errors.Error) as exc:
        log.warning("task %s submitted but not recorded as queued: %s", task.task_id, exc)


async def publish_review(broker: NatsBroker, decision: ReviewDecision) -> None:
    """Send a review decision to the TASKS stream (deduplicated by its id): durable, so a
    router that restarts meanwhile still applies it. Errors as ``publish_task``."""
    await _publish_work(broker, decision, subjects.TASK_REVIEW, decision.decision_id,
                        f"review of task {decision.task_id}")


async def _publish_work(broker: NatsBroker, message: BaseModel, subject: str, msg_id: str, what: str) -> None:
    try:
        await broker.publish(message, subject, stream=subjects.TASKS_STREAM,
                             headers={"Nats-Msg-Id": msg_id}, timeout=10.0)
    except nats.errors.MaxPayloadError as exc:
        limit = getattr(broker.connection, "max_payload", 0)
        raise InvalidPayload(f"{what} is larger than the bus allows ({limit} bytes)") from exc
    except nats.js.errors.APIError as exc:
        if exc.err_code == STREAM_FULL:
            raise Overloaded(
                "the task queue is full (SYNDICATE_TASK_QUEUE_MAX tasks wait for the router); retry later"
            ) from exc
        raise BusError(f"submit failed: {exc.description or exc}") from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusError(f"submit failed: {exc or type(exc).__name__}") from exc


def jetstream(broker: NatsBroker) -> Any:
    """The broker's nats-py JetStream context (for KV and stream admin FastStream lacks)."""
    return broker.connection.jetstream()


def add_health_responder(broker: NatsBroker, build: Callable[[], HealthReply]) -> None:
    """Every instance answers the HEALTH_PING broadcast (no queue group) with ``build()``."""

    @broker.subscriber(subjects.HEALTH_PING)
    async def _health(ping: HealthPing) -> HealthReply:  # named: FastStream skips validating `_`
        return build()


async def request(
    broker: NatsBroker, subject: str, payload: BaseModel, reply_type: type[T], *, timeout: float = 30.0,  # noqa: ASYNC109 - passed to the NATS request
    attempts: int = 1,
) -> T:
    """Request/reply with typed answer; an ErrorReply becomes the matching SyndicateError.

    While nobody listens on ``subject`` (the service is restarting) or the bus is
    reconnecting, the request is retried until ``timeout``. ``attempts`` > 1 also retries
    after a timeout (for idempotent requests whose responder may have died mid-request)."""
    msg = None
    for attempt in range(1, attempts + 1):
        try:
            msg = await _request_once(broker, subject, payload, timeout)
            break
        except TimeoutError as exc:
            if attempt == attempts:
                raise BusError(f"no answer on {subject} within {timeout:.0f}s") from exc
    assert msg is not None
    data = json.loads(msg.body)
    if isinstance(data, dict) and "error" in data and set(data) <= {"version", "error"}:
        err = ErrorReply.model_validate(data).error
        raise error_from_code(err.code, err.message, err.detail)
    return reply_type.model_validate(data)


async def _request_once(broker: NatsBroker, subject: str, payload: BaseModel, timeout: float) -> Any:  # noqa: ASYNC109
    """One request; retried while no responder listens or the connection is reconnecting."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            return await broker.request(payload, subject, timeout=max(0.1, end - loop.time()))
        except TimeoutError:
            raise
        except (nats.errors.NoRespondersError, nats.errors.ConnectionReconnectingError) as exc:
            if loop.time() + 0.5 > end:
                raise BusError(f"request on {subject} failed: no responders ({type(exc).__name__})") from exc
            await asyncio.sleep(0.5)
        except Exception as exc:  # connection closed, payload over max_payload, ...
            raise BusError(f"request on {subject} failed: {exc or type(exc).__name__}") from exc


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
