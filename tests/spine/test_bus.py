"""Bus wiring in memory (TestNatsBroker): typed replies, error replies, no crash."""

from __future__ import annotations

import json

from faststream.nats import TestNatsBroker

from shared import subjects
from shared.bus import make_broker, to_error_info
from shared.contracts import ErrorReply, ExecRequest, ExecResult, TaskSubmit
from shared.errors import QueueFull, error_from_code
from shared.settings import Settings


def build():
    broker = make_broker("test", Settings(), telemetry=False)

    @broker.subscriber(subjects.SANDBOX_EXEC)
    async def handle(req: ExecRequest) -> ExecResult:
        if req.code == "full":
            raise QueueFull("queue of 4 is full")
        return ExecResult(status="ok", stdout=req.code)

    return broker


async def test_typed_reply() -> None:
    broker = build()
    async with TestNatsBroker(broker) as br:
        msg = await br.request(ExecRequest(code="print(1)"), subjects.SANDBOX_EXEC)
        assert ExecResult.model_validate_json(msg.body).stdout == "print(1)"


async def test_invalid_payload_gets_error_reply() -> None:
    broker = build()
    async with TestNatsBroker(broker) as br:
        msg = await br.request({"code": 12, "limits": {"wall_s": -1}}, subjects.SANDBOX_EXEC)
        reply = ErrorReply.model_validate_json(msg.body)
        assert reply.error.code == "invalid_payload"
        assert "code" in reply.error.message and "wall_s" in reply.error.message


async def test_wrong_version_is_refused() -> None:
    broker = build()
    async with TestNatsBroker(broker) as br:
        msg = await br.request({"version": 2, "code": "x"}, subjects.SANDBOX_EXEC)
        assert ErrorReply.model_validate_json(msg.body).error.code == "invalid_payload"


async def test_syndicate_error_travels_with_its_code() -> None:
    broker = build()
    async with TestNatsBroker(broker) as br:
        msg = await br.request(ExecRequest(code="full"), subjects.SANDBOX_EXEC)
        err = ErrorReply.model_validate_json(msg.body).error
        assert err.code == "queue_full"
        assert isinstance(error_from_code(err.code, err.message), QueueFull)


async def test_not_json_gets_error_reply() -> None:
    broker = build()
    async with TestNatsBroker(broker) as br:
        msg = await br.request(b"\xff\x00 not json", subjects.SANDBOX_EXEC)
        assert json.loads(msg.body)["error"]["code"] == "invalid_payload"


def test_unknown_fields_are_refused() -> None:
    try:
        TaskSubmit.model_validate({"text": "x", "surprise": 1})
    except Exception as exc:
        assert to_error_info(exc).code == "invalid_payload"
    else:
        raise AssertionError("extra field accepted")
