"""``GenerateClient``: model requests from the edge (the gateway's OpenAI and Ollama
routes, the console): which models are served, start a generation, follow its events,
cancel it.

    client = GenerateClient(broker)
    served = await client.models()                       # {"qwen2_5-coder-1_5b": ServedModel, ...}
    gen = await client.start(GenerateRequest(model="qwen2_5-coder-1_5b", messages=[...]))
    try:
        async for event in gen:                          # "text" / "tool_call" events, then "done"
            ...
        reply = gen.reply                                # the whole GenerateReply
    finally:
        await gen.close()                                # cancels it unless it ended

Errors are the syndicate's exceptions (shared/errors.py): ``start`` raises
``ModelUnavailable`` (nobody serves the model), ``InvalidPayload`` (the server refused the
request), ``BusError``; iterating raises what the generation ended with — ``QueueFull``
(the engine's bounded queue), ``DeadlineExceeded`` (``timeout_s`` passed), ``Cancelled``,
``ToolCallInvalid``, ``EngineError`` — or ``ModelUnavailable`` when the serving process
went silent (it died) for ``lost_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats
from faststream.nats import NatsBroker
from pydantic import ValidationError

from shared import registry, subjects
from shared.bus import request, scatter
from shared.contracts import (
    GenerateAccepted,
    GenerateCancel,
    GenerateEvent,
    GenerateReply,
    GenerateRequest,
    HealthPing,
    HealthReply,
)
from shared.errors import BusError, DeadlineExceeded, ModelUnavailable, error_from_code

LOST_AFTER_S = 10.0  # no event (not even a keepalive, sent every 2 s) for this long: the server died
DEADLINE_GRACE_S = 5.0  # past the request's deadline, wait this long for the server's own timeout


@dataclass
class ServedModel:
    """A model some processes serve, from their health replies."""

    name: str
    instances: list[HealthReply] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        return sorted({h.service for h in self.instances})

    @property
    def slots(self) -> int:
        return sum(int(h.details.get("slots", 1) or 1) for h in self.instances)

    @property
    def ready(self) -> bool:
        return any(h.state == "ready" for h in self.instances)


def served_models(replies: list[HealthReply]) -> dict[str, ServedModel]:
    """The models served by model-server processes (agents, the router's classifier), by name."""
    out: dict[str, ServedModel] = {}
    for h in replies:
        if not h.model or h.state not in ("ready", "degraded") or not _serves_models(h.service):
            continue
        out.setdefault(h.model, ServedModel(h.model)).instances.append(h)
    return dict(sorted(out.items()))


def _serves_models(service: str) -> bool:
    try:
        return registry.service(service).model_server
    except KeyError:
        return False


class GenerateClient:
    """Model requests over the bus (see the module docstring)."""

    def __init__(self, broker: NatsBroker, *, accept_timeout_s: float = 10.0, lost_after_s: float = LOST_AFTER_S,
                 models_cache_s: float = 2.0) -> None:
        self.broker = broker
        self.accept_timeout_s = accept_timeout_s
        self.lost_after_s = lost_after_s
        self.models_cache_s = models_cache_s
        self._models: dict[str, ServedModel] = {}
        self._models_at = -1e9
        self._refresh_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    @property
    def nc(self) -> nats.NATS | None:
        try:
            nc = self.broker.connection
        except Exception:
            return None
        return nc if getattr(nc, "is_connected", False) else None

    async def models(self, *, fresh: bool = False, wait_s: float = 0.3) -> dict[str, ServedModel]:
        """The served models, from the services' health replies. The last answer is given at
        once (a ping waits ``wait_s``: requests must not pay it); when it is older than
        ``models_cache_s`` a new ping runs in the background. ``fresh``: ping now and wait
        (a name not in the last answer may have appeared since)."""
        if fresh or self._models_at < 0:
            await self._refresh(wait_s)
        elif time.monotonic() - self._models_at > self.models_cache_s and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_quietly(wait_s))
        return self._models

    async def _refresh(self, wait_s: float) -> None:
        async with self._refresh_lock:
            nc = self.nc
            if nc is None:
                raise BusError("the syndicate's message bus is unreachable")
            raw = await scatter(nc, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), wait_s=wait_s)
            replies = []
            for data in raw:
                with contextlib.suppress(ValidationError, ValueError):
                    replies.append(HealthReply.model_validate_json(data))
            self._models, self._models_at = served_models(replies), time.monotonic()

    async def _refresh_quietly(self, wait_s: float) -> None:
        try:
            await self._refresh(wait_s)
        except Exception:  # the bus is down: the next caller that needs a fresh answer hears it
            pass
        finally:
            self._refresher = None

    async def start(self, req: GenerateRequest) -> Generation:
        """Send ``req`` to a server of its model; its events follow on the returned Generation."""
        nc = self.nc
        if nc is None:
            raise BusError("the syndicate's message bus is unreachable")
        sub = await nc.subscribe(subjects.model_events(req.request_id))  # before the request: no event lost
        try:
            accepted = await request(self.broker, subjects.model_generate(req.model), req, GenerateAccepted,
                                     timeout=self.accept_timeout_s)
        except BusError as exc:
            await _quietly(sub.unsubscribe())
            raise ModelUnavailable(f"no process serves the model {req.model!r} now ({exc.message})") from exc
        except BaseException:
            await _quietly(sub.unsubscribe())
            raise
        return Generation(self, req, accepted, sub)

    async def generate(self, req: GenerateRequest) -> GenerateReply:
        """The whole reply of ``req`` (no streaming needed: ask with ``stream=False``)."""
        gen = await self.start(req)
        try:
            return await gen.result()
        finally:
            await gen.close()

    async def cancel(self, request_id: str, reason: str = "cancelled by the client") -> None:
        nc = self.nc
        if nc is not None:
            await _quietly(nc.publish(subjects.MODEL_CANCEL, GenerateCancel(request_id=request_id, reason=reason)
                                      .model_dump_json().encode()))


class Generation:
    """One running generation: iterate its events ("text", "tool_call", then "done"; an
    "error" event raises its exception), or await ``result()``."""

    def __init__(self, client: GenerateClient, req: GenerateRequest, accepted: GenerateAccepted, sub: Any) -> None:
        self.client, self.request, self.accepted, self._sub = client, req, accepted, sub
        self.reply: GenerateReply | None = None
        self.ended = False  # done or error: nothing to cancel
        self.closed = False

    async def next(self) -> GenerateEvent:
        """The next event other than a keepalive ("done" last; raises on "error")."""
        if self.ended:
            raise RuntimeError("the generation has ended")
        while True:
            wait = self.client.lost_after_s
            left = self.request.deadline + DEADLINE_GRACE_S - time.time()
            if left <= 0:
                self.ended = True
                await self.client.cancel(self.request.request_id, "deadline")
                raise DeadlineExceeded(f"request {self.request.request_id} passed its deadline")
            try:
                msg = await self._sub.next_msg(timeout=min(wait, left))
            except (TimeoutError, nats.errors.TimeoutError):
                if left <= wait:
                    continue  # the deadline check above ends it
                self.ended = True
                raise ModelUnavailable(
                    f"{self.accepted.instance} stopped answering for request {self.request.request_id}") from None
            try:
                event = GenerateEvent.model_validate_json(msg.data)
            except (ValidationError, ValueError):
                continue  # not ours to read (a newer contract): the "done" reply is the truth
            if event.type == "keepalive":
                continue
            if event.type == "done":
                self.ended, self.reply = True, event.reply
            elif event.type == "error":
                self.ended = True
                err = event.error
                raise error_from_code(err.code, err.message, err.detail) if err else ModelUnavailable("generation failed")
            return event

    def __aiter__(self) -> AsyncIterator[GenerateEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerateEvent]:
        while not self.ended:
            yield await self.next()

    async def result(self) -> GenerateReply:
        """Wait for the end; the whole reply."""
        while not self.ended:
            await self.next()
        assert self.reply is not None
        return self.reply

    async def close(self, reason: str = "cancelled by the client") -> None:
        """Stop listening; a generation that has not ended is cancelled (the client left)."""
        if self.closed:
            return
        self.closed = True
        if not self.ended:
            await self.client.cancel(self.request.request_id, reason)
        await _quietly(self._sub.unsubscribe())


async def _quietly(aw: Any) -> None:
    with contextlib.suppress(Exception):
        await aw
