"""Hostile input against the real services: property-based tests (hypothesis) send
malformed, oversized, wrong-typed, wrong-version and random payloads to every subject.

- Request/reply subjects (sandbox exec, retriever search/ingest/embed, health, cancel):
  every request gets an answer — its reply model, or an ErrorReply whose code is
  ``invalid_payload`` whenever the payload breaks the contract.
- JetStream subjects (task submit, coder/reasoner jobs, step results, ingest jobs, eval
  runs): every invalid message becomes exactly one dead letter and is acked; nothing is
  left pending or redelivered.
- Afterwards every process is alive and answers health.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared import contracts as c
from shared import subjects
from shared.contracts import DeadLetter
from tests.conftest import WAIT_S, NatsServer, Services

from .conftest import CODE, FAST_ENV

pytestmark = pytest.mark.integration

SERVICES = {
    "router": "services.router", "coder-agent": "services.coder_agent", "reasoner-agent": "services.reasoner_agent",
    "retriever": "services.retriever", "code-sandbox": "services.code_sandbox", "evaluator": "services.evaluator",
}
EXAMPLES = 25  # per subject; every example is a real message to a real process

# subject -> (request model, a valid example, reply model or None for a broadcast with no answer)
REQUESTS: dict[str, tuple[type[BaseModel], dict[str, Any], type[BaseModel] | None]] = {
    subjects.SANDBOX_EXEC: (c.ExecRequest, {"code": "print(1)", "limits": {"wall_s": 5}}, c.ExecResult),
    subjects.RETRIEVER_SEARCH: (c.SearchRequest, {"query": "loans", "collection": "notes", "top_k": 3}, c.SearchReply),
    subjects.RETRIEVER_INGEST: (c.IngestRequest, {"collection": "hostile", "documents": [{"path": "a.md", "content": "hello"}]},
                                c.IngestReply),
    subjects.RETRIEVER_EMBED: (c.EmbedRequest, {"texts": ["hello"]}, c.EmbedReply),
    subjects.HEALTH_PING: (c.HealthPing, {}, c.HealthReply),
    subjects.TASK_CANCEL: (c.CancelRequest, {"task_id": "t-hostile", "reason": "test"}, None),
}
JOBS = {
    "task_id": "t-hostile", "step_id": "t-hostile.1", "text": "hi", "deadline": 1.0,  # long past: ends at once
}
STREAMED: dict[str, tuple[type[BaseModel], dict[str, Any], str]] = {
    subjects.TASK_SUBMIT: (c.TaskSubmit, {"task_id": "t-hostile-submit", "kind": "reason", "text": "hi"},
                           subjects.ROUTER_TASKS_DURABLE),
    subjects.JOB_CODER: (c.AgentJob, {**JOBS, "agent": "coder"}, subjects.CODER_DURABLE),
    subjects.JOB_REASONER: (c.AgentJob, {**JOBS, "agent": "reasoner"}, subjects.REASONER_DURABLE),
    subjects.STEP_RESULT: (c.StepResult, {"task_id": "t-hostile", "step_id": "t-hostile.1", "agent": "coder", "status": "done"},
                           subjects.ROUTER_RESULTS_DURABLE),
    subjects.INGEST_JOB: (c.IngestRequest, {"collection": "hostile", "documents": [{"path": "b.md", "content": "hi"}]},
                          subjects.RETRIEVER_INGEST_DURABLE),
    subjects.EVAL_RUN: (c.EvalRunRequest, {"suite": "no-such-suite", "limit": 1}, subjects.EVALUATOR_DURABLE),
}
STREAM_OF = {subjects.TASK_SUBMIT: subjects.TASKS_STREAM, subjects.INGEST_JOB: subjects.INGEST_STREAM,
             subjects.EVAL_RUN: subjects.EVAL_STREAM}


# --- payload strategies ----------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def mutations(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload broken one way: a field dropped, retyped or oversized, an unknown
    field, a wrong version."""
    keys = sorted(valid) or ["version"]
    key = st.sampled_from(keys)
    return st.one_of(
        key.map(lambda k: {x: v for x, v in valid.items() if x != k}),
        st.tuples(key, json_values).map(lambda kv: {**valid, kv[0]: kv[1]}),
        st.tuples(key, st.integers(1, 3)).map(lambda kv: {**valid, kv[0]: "x" * (300_000 * kv[1] // 3)}),
        st.tuples(st.text(min_size=1, max_size=12).filter(lambda k: k not in valid), json_values)
        .map(lambda kv: {**valid, kv[0]: kv[1]}),
        st.one_of(st.integers().filter(lambda v: v != 1), st.text(max_size=5), st.none())
        .map(lambda v: {**valid, "version": v}),
    )


def payloads(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),  # not JSON at all
        json_values.map(lambda v: json.dumps(v).encode()),  # JSON of any shape
        mutations(valid).map(lambda v: json.dumps(v).encode()),
    )


def is_valid(model: type[BaseModel], payload: bytes) -> bool:
    """The contract's verdict on ``payload`` (an empty body is no message at all)."""
    try:
        model.model_validate(json.loads(payload))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


# --- the processes under attack ----------------------------------------------------------
class Bus:
    """One nats-py connection driven from a private event loop (hypothesis tests are sync)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.nc: nats.NATS = self.run(nats.connect(url))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Bus]]:
    root = tmp_path_factory.mktemp("hostile")
    server = NatsServer(root)
    server.start()
    state = root / "state"
    state.mkdir()
    services = Services(server, state)
    script = root / "reply.json"
    script.write_text(json.dumps([CODE]))
    try:
        for name, module in SERVICES.items():
            services.start(name, module, **FAST_ENV, SYNDICATE_ENGINE_SCRIPT=str(script))
        services.wait_ready(list(SERVICES))
        bus = Bus(server.url)
        yield services, bus
        bus.close()
    finally:
        services.stop()
        server.stop()


def assert_all_alive(services: Services) -> None:
    for name, proc in services.procs.items():
        assert proc.poll() is None, f"{name} died:\n{services.log(name)[-3000:]}"
    services.wait_ready(list(SERVICES))


# --- request/reply -------------------------------------------------------------------------
@pytest.mark.parametrize("subject", sorted(REQUESTS))
def test_every_request_gets_an_answer(target, subject: str) -> None:
    services, bus = target
    model, valid, reply_model = REQUESTS[subject]
    assert is_valid(model, json.dumps(valid).encode())

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=payloads(valid))
    def attack(payload: bytes) -> None:
        valid_here = is_valid(model, payload)
        try:
            msg = bus.run(bus.nc.request(subject, payload, timeout=30))
        except nats.errors.TimeoutError:
            assert reply_model is None and valid_here, f"no answer to {payload[:200]!r}"
            return
        data = json.loads(msg.data) if msg.data else None
        if isinstance(data, dict) and set(data) <= {"version", "error"} and "error" in data:
            err = c.ErrorReply.model_validate(data).error
            assert err.message
            if not valid_here:
                assert err.code == "invalid_payload", err
        else:
            assert valid_here, f"{payload[:200]!r} was accepted: {msg.data[:200]!r}"
            if reply_model is not None:
                reply_model.model_validate(data)

    attack()
    assert_all_alive(services)


# --- JetStream -------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", sorted(STREAMED))
def test_bad_stream_messages_are_dead_lettered_once(target, subject: str) -> None:
    services, bus = target
    model, valid, durable = STREAMED[subject]
    js = bus.nc.jetstream()
    sent: list[bytes] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=payloads(valid))
    def attack(payload: bytes) -> None:
        bus.run(js.publish(subject, payload))
        sent.append(payload)

    attack()
    invalid = sum(not is_valid(model, p) for p in sent)
    assert invalid > 0
    stream = STREAM_OF.get(subject, subjects.JOBS_STREAM)

    # Consumed to the end: nothing pending, nothing waiting for an ack.
    end = time.monotonic() + WAIT_S
    while True:
        info = bus.run(js.consumer_info(stream, durable))
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        assert time.monotonic() < end, f"{durable}: {info.num_pending} pending, {info.num_ack_pending} unacked"
        time.sleep(0.5)
    assert info.num_redelivered == 0, f"{durable} redelivered {info.num_redelivered} messages"

    letters = dead_letters(bus, subject)
    assert len(letters) == invalid, (len(letters), invalid)
    assert all(letter.reason.startswith("invalid_payload:") for letter in letters)
    assert_all_alive(services)


def dead_letters(bus: Bus, subject: str) -> list[DeadLetter]:
    async def read() -> list[DeadLetter]:
        js, letters = bus.nc.jetstream(), subjects.dead_letter(subject.replace(".", "_"))
        info = await js.stream_info(subjects.DEAD_LETTER_STREAM, subjects_filter=letters)
        count = sum((info.state.subjects or {}).values())  # read as many as it holds, not "until a second of quiet"
        out: list[DeadLetter] = []
        if not count:
            return out
        sub = await js.subscribe(letters, ordered_consumer=True)
        try:
            while len(out) < count:
                out.append(DeadLetter.model_validate_json((await sub.next_msg(timeout=WAIT_S)).data))
            return out
        finally:
            await sub.unsubscribe()

    return bus.run(read())


# --- limits, one by one, with the message a caller sees ---------------------------------------
LIMITS = [
    (subjects.RETRIEVER_SEARCH, {"query": "x", "top_k": 101}, "top_k"),
    (subjects.RETRIEVER_SEARCH, {"query": "x" * 10_001}, "query"),
    (subjects.RETRIEVER_EMBED, {"texts": ["x"] * 513}, "texts"),
    (subjects.RETRIEVER_INGEST, {"documents": [{"path": "", "content": "x"}]}, "path"),
    (subjects.SANDBOX_EXEC, {"code": "print(1)", "files": [{"path": f"f{i}", "content": ""} for i in range(65)]}, "files"),
    (subjects.SANDBOX_EXEC, {"code": "x" * 200_001}, "code"),
    (subjects.TASK_CANCEL, {"task_id": "t-1 > *", "reason": "x"}, "task_id"),
]


@pytest.mark.parametrize(("subject", "payload", "field"), LIMITS, ids=[f"{s}-{f}" for s, _, f in LIMITS])
def test_limits_are_refused_with_a_clear_error(target, subject: str, payload: dict, field: str) -> None:
    _, bus = target
    msg = bus.run(bus.nc.request(subject, json.dumps(payload).encode(), timeout=30))
    err = c.ErrorReply.model_validate_json(msg.data).error
    assert err.code == "invalid_payload" and field in err.message, err


def test_stream_limits_are_dead_lettered_with_the_field(target) -> None:
    _, bus = target
    js = bus.nc.jetstream()
    cases = {
        subjects.TASK_SUBMIT: ({"text": "x" * 200_001}, "text"),
        subjects.EVAL_RUN: ({"suite": "humaneval", "limit": 0}, "limit"),
        subjects.INGEST_JOB: ({"documents": [{"path": "a", "content": "x", "tags": ["t"] * 33}]}, "tags"),
    }
    before = {s: len(dead_letters(bus, s)) for s in cases}
    for subject, (payload, _) in cases.items():
        bus.run(js.publish(subject, json.dumps(payload).encode()))
    for subject, (_, field) in cases.items():
        end = time.monotonic() + WAIT_S
        while len(letters := dead_letters(bus, subject)) == before[subject]:
            assert time.monotonic() < end, f"no dead letter for {subject}"
        assert field in letters[-1].reason, letters[-1].reason


def test_payload_over_the_bus_limit_fails_at_the_sender(target) -> None:
    services, bus = target
    big = b"x" * (bus.nc.max_payload + 1)
    with pytest.raises(nats.errors.MaxPayloadError):
        bus.run(bus.nc.request(subjects.SANDBOX_EXEC, big, timeout=5))
    # The CLI refuses a task too large for the bus before publishing, with the limit.
    files = []
    for i in range(5):  # 5 x 190k characters: each file within its limit, the task not
        files += ["--file", str(Path(services.state_dir) / f"part{i}.py")]
        Path(files[-1]).write_text("x = 1\n" * 31_666)
    out = services.cli("submit", "--kind", "code", "Fix these files.", *files)
    assert out.returncode == 2 and "limit is 900000" in out.stderr, out.stderr
    big = Path(services.state_dir) / "big.py"
    big.write_text("x = 1\n" * 40_000)  # one file over its 200k limit
    out = services.cli("submit", "--kind", "code", "Fix this file.", "--file", str(big))
    assert out.returncode == 2 and "200000 characters" in out.stderr, out.stderr
    assert_all_alive(services)


def test_dead_letters_name_their_source(target) -> None:
    """A message that is not JSON, on each stream subject: one dead letter each, naming
    its subject, the reason and the payload."""
    _, bus = target
    before = {s: len(dead_letters(bus, s)) for s in STREAMED}
    marker = f"not json {time.time()}".encode()
    for subject in STREAMED:
        bus.run(bus.nc.jetstream().publish(subject, marker))
    counts: Counter[str] = Counter()
    end = time.monotonic() + WAIT_S
    while len(counts) < len(STREAMED):
        assert time.monotonic() < end, f"dead letters only for {sorted(counts)}"
        for subject in STREAMED:
            new = [x for x in dead_letters(bus, subject)[before[subject]:] if x.payload == marker.decode()]
            if new:
                assert len(new) == 1 and new[0].source == subject and new[0].reason.startswith("invalid_payload:")
                counts[subject] += 1
