"""Model requests over a real nats-server: ModelServer (the agents' side) on scripted
engines, GenerateClient (the gateway's side): streamed text, parsed tool calls, choices,
the queue group, back-pressure, deadlines, cancel, a server that dies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import llama_cpp.llama_grammar  # noqa: F401 - loaded before the event loop runs (agents have it loaded)
import pytest

from shared.bus import add_health_responder, make_broker
from shared.contracts import ChatTurn, GenerateRequest, HealthReply, ToolCall, ToolSpec
from shared.errors import (
    DeadlineExceeded,
    InvalidPayload,
    ModelUnavailable,
    QueueFull,
    ToolCallInvalid,
)
from shared.generation import tool_calls as tc
from shared.generation.client import GenerateClient, served_models
from shared.generation.serve import ModelServer
from shared.llm.base import GenerationRequest, ScriptedEngine
from shared.settings import Settings
from tests.conftest import NatsServer, until

pytestmark = pytest.mark.integration

WEATHER = ToolSpec(name="get_weather", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def ask(model: str = "m", text: str = "hi", **kw: Any) -> GenerateRequest:
    return GenerateRequest(model=model, messages=[ChatTurn(role="user", content=text)], **kw)


@asynccontextmanager
async def serving(server: NatsServer, *engines: ScriptedEngine, keepalive_s: float = 0.2,
                  lost_after_s: float = 5.0) -> AsyncIterator[tuple[GenerateClient, list[ModelServer]]]:
    settings = Settings(nats_url=server.url)
    brokers, servers = [], []
    for i, engine in enumerate(engines):
        broker = make_broker(f"agent-{i}", settings, telemetry=False)
        add_health_responder(broker, lambda i=i, name=engine.name: HealthReply(
            service="coder-agent", instance=f"coder-agent@test:{i}", pid=i, model=name, details={"slots": 2}))
        await broker.start()
        ms = ModelServer(broker, "coder-agent", instance=f"coder-agent@test:{i}", keepalive_s=keepalive_s)
        await ms.serve(engine)
        brokers.append(broker)
        servers.append(ms)
    client_broker = make_broker("gateway", settings, telemetry=False)
    await client_broker.start()
    try:
        yield GenerateClient(client_broker, lost_after_s=lost_after_s), servers
    finally:
        for ms in servers:
            await ms.stop()
        for b in [*brokers, client_broker]:
            await b.stop()


async def test_text_streams_and_the_reply_is_whole(nats_server: NatsServer) -> None:
    engine = ScriptedEngine(["The answer is 42, as always."], name="m")
    async with serving(nats_server, engine) as (client, _):
        gen = await client.start(ask(temperature=0.0, seed=7, stop=["END"], max_tokens=9))
        events = [e async for e in gen]
        await gen.close()
    assert [e.type for e in events][-1] == "done"
    assert "".join(e.text for e in events if e.type == "text") == "The answer is 42, as always."
    reply = gen.reply
    assert reply is not None and reply.choices[0].text == "The answer is 42, as always."
    assert reply.choices[0].finish_reason == "stop" and reply.usage.output_tokens > 0
    assert (reply.service, reply.instance, reply.model) == ("coder-agent", "coder-agent@test:0", "m")
    [sent] = engine.requests  # the sampling fields reach the engine
    assert (sent.temperature, sent.seed, sent.stop, sent.max_tokens) == (0.0, 7, ["END"], 9)
    assert sent.messages == [{"role": "user", "content": "hi"}]


async def test_a_call_is_parsed_checked_and_streamed_whole(nats_server: NatsServer) -> None:
    engine = ScriptedEngine([CALL], name="m")
    async with serving(nats_server, engine) as (client, _):
        gen = await client.start(ask(tools=[WEATHER]))
        events = [e async for e in gen]
    assert [e.type for e in events] == ["tool_call", "done"]
    call = events[0].tool_call
    assert call is not None and (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    choice = events[-1].reply.choices[0]  # type: ignore[union-attr]
    assert (choice.finish_reason, choice.text, choice.tool_calls) == ("tool_calls", "", [call])
    # The scripted engine has no template of its own: the tools went into the system message.
    assert "get_weather" in engine.requests[0].messages[0]["content"]


ANSWERED = [ChatTurn(role="user", content="Weather in Paris?"),
            ChatTurn(role="assistant", tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})]),
            ChatTurn(role="tool", content="22 C and sunny", tool_call_id="c1")]


@pytest.mark.parametrize("choice", ["auto", "required"])
async def test_a_call_the_conversation_answered_is_not_handed_back_under_auto(nats_server: NatsServer,
                                                                              choice: str) -> None:
    """A client that runs every call it gets would loop for ever (the 1.5B repeats this one)."""
    engine = ScriptedEngine([CALL, "It is 22 C and sunny in Paris."], name="m")
    async with serving(nats_server, engine) as (client, _):
        gen = await client.start(GenerateRequest(model="m", messages=ANSWERED, tools=[WEATHER],
                                                 tool_choice=choice))  # type: ignore[arg-type]
        events = [e async for e in gen]
    reply = events[-1].reply
    assert reply is not None
    if choice == "required":  # a forced call is what the caller asked for
        assert [e.type for e in events] == ["tool_call", "done"] and len(engine.requests) == 1
        return
    assert {e.type for e in events[:-1]} == {"text"} and reply.choices[0].tool_calls == []
    assert "".join(e.text for e in events[:-1]) == "It is 22 C and sunny in Paris."
    assert reply.choices[0].text == "It is 22 C and sunny in Paris." and reply.choices[0].finish_reason == "stop"
    first, second = engine.requests
    assert first.grammar is None and second.grammar == tc.NO_CALL_GRAMMAR
    assert tc.REPEAT_NOTE in second.messages[-1]["content"] and tc.REPEAT_NOTE not in first.messages[-1]["content"]
    assert reply.usage.output_tokens > 0


async def test_the_same_call_after_a_new_question_is_a_call(nats_server: NatsServer) -> None:
    engine = ScriptedEngine([CALL], name="m")
    again = [*ANSWERED, ChatTurn(role="assistant", content="22 C."), ChatTurn(role="user", content="And now?")]
    async with serving(nats_server, engine) as (client, _):
        reply = await client.generate(GenerateRequest(model="m", messages=again, tools=[WEATHER]))
    assert reply.choices[0].tool_calls[0].arguments == {"city": "Paris"} and len(engine.requests) == 1


async def test_a_broken_call_under_auto_is_a_flagged_plain_answer(nats_server: NatsServer) -> None:
    bad = '<tool_call>\n{"name": "get_weather", "arguments": {"town": "Paris"}}\n</tool_call>'
    async with serving(nats_server, ScriptedEngine([bad], name="m")) as (client, _):
        reply = await client.generate(ask(tools=[WEATHER]))
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.tool_calls == []
    assert choice.text == bad.replace("<tool_call>\n", "<tool_call>\n", 1)
    assert "'city' is a required property" in choice.invalid_tool_calls[0].error


INVENTED = '<tool_call>\n{"name": "search", "arguments": {"query": "capital of France"}}\n</tool_call>'


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_of_a_tool_nobody_offered_gets_a_second_try_for_an_answer(nats_server: NatsServer,
                                                                               stream: bool) -> None:
    """Where no tool fits, the 0.5B calls one it made up; under auto the client gets an answer."""
    engine = ScriptedEngine([INVENTED, "The capital of France is Paris."], name="m")
    async with serving(nats_server, engine) as (client, _):
        gen = await client.start(ask(text="What is the capital of France?", tools=[WEATHER], stream=stream))
        events = [e async for e in gen]
    reply = events[-1].reply
    assert reply is not None
    choice = reply.choices[0]
    assert (choice.text, choice.tool_calls, choice.invalid_tool_calls) == ("The capital of France is Paris.", [], [])
    assert choice.finish_reason == "stop"
    if stream:  # the invented call never reached the client, not even as text
        assert "".join(e.text for e in events if e.type == "text") == "The capital of France is Paris."
    first, second = engine.requests
    assert first.grammar is None and second.grammar == tc.NO_CALL_GRAMMAR
    assert tc.unknown_tool_note(["search"]) in second.messages[-1]["content"]
    assert second.messages[-1]["content"].startswith("What is the capital of France?")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unknown_tool_beside_an_answer_is_flagged_text_with_no_second_try(nats_server: NatsServer,
                                                                                  stream: bool) -> None:
    engine = ScriptedEngine([f"Paris, I think.\n{INVENTED}"], name="m")
    async with serving(nats_server, engine) as (client, _):
        gen = await client.start(ask(tools=[WEATHER], stream=stream))
        events = [e async for e in gen]
    choice = events[-1].reply.choices[0]  # type: ignore[union-attr]
    assert len(engine.requests) == 1 and choice.tool_calls == []
    assert choice.text.startswith("Paris, I think.") and '"name": "search"' in choice.text
    assert "no tool named 'search'" in choice.invalid_tool_calls[0].error
    if stream:
        assert "".join(e.text for e in events if e.type == "text") == choice.text


async def test_an_unknown_tool_under_required_is_never_a_call(nats_server: NatsServer) -> None:
    async with serving(nats_server, ScriptedEngine([INVENTED], name="m")) as (client, _):
        with pytest.raises(ToolCallInvalid):
            await client.generate(ask(tools=[WEATHER], tool_choice="required"))


async def test_a_required_call_that_is_broken_is_an_error_never_a_call(nats_server: NatsServer) -> None:
    async with serving(nats_server, ScriptedEngine(["I will not call anything."], name="m")) as (client, _):
        with pytest.raises((ToolCallInvalid, InvalidPayload)):
            await client.generate(ask(tools=[WEATHER], tool_choice="required"))


async def test_n_choices_each_get_their_own_seed(nats_server: NatsServer) -> None:
    engine = ScriptedEngine([lambda r: f"sample {r.seed}"], name="m", slots=3)
    async with serving(nats_server, engine) as (client, _):
        reply = await client.generate(ask(n=3, seed=10))
    assert [c.text for c in reply.choices] == ["sample 10", "sample 11", "sample 12"]
    assert sorted(r.request_id for r in engine.requests) == [f"{reply.request_id}.{i}" for i in range(3)]


async def test_an_unserved_model_is_unavailable(nats_server: NatsServer) -> None:
    async with serving(nats_server, ScriptedEngine(["x"], name="m")) as (client, _):
        with pytest.raises(ModelUnavailable, match="no process serves the model 'other'"):
            await client.start(ask(model="other"))
        with pytest.raises(InvalidPayload, match="not a valid JSON schema"):
            await client.start(ask(json_schema={"type": "objekt"}))
        with pytest.raises(InvalidPayload, match="cannot be turned into a grammar"):
            await client.generate(ask(json_schema={"$ref": "https://example.com/remote.json"}))


async def test_copies_of_a_model_share_its_requests(nats_server: NatsServer) -> None:
    engines = [ScriptedEngine(["a"], name="m"), ScriptedEngine(["b"], name="m")]
    async with serving(nats_server, *engines) as (client, _):
        replies = await asyncio.gather(*(client.generate(ask()) for _ in range(12)))
    assert len(engines[0].requests) + len(engines[1].requests) == 12  # each request ran once
    assert {r.instance for r in replies} == {"coder-agent@test:0", "coder-agent@test:1"}


class Blocking(ScriptedEngine):
    """An engine whose generations wait until released (or cancelled)."""

    def __init__(self, limit: int = 1) -> None:
        super().__init__(["done"], name="m")
        self.release = asyncio.Event()
        self.limit, self.running, self.cancels = limit, 0, []

    async def generate(self, request: GenerationRequest, on_token: Callable[..., Any] | None = None) -> Any:
        if self.running >= self.limit:
            raise QueueFull("model m is full")
        self.running += 1
        try:
            while not self.release.is_set():
                if request.request_id in self._cancelled:
                    from shared.errors import Cancelled
                    raise Cancelled("cancelled")
                if request.deadline is not None and asyncio.get_running_loop().time() and request.deadline < __import__("time").time():
                    raise DeadlineExceeded("generation passed its deadline")
                await asyncio.sleep(0.02)
            return await super().generate(request, on_token)
        finally:
            self.running -= 1

    def cancel(self, request_id: str) -> bool:
        self.cancels.append(request_id)
        return super().cancel(request_id)


async def test_a_full_engine_is_queue_full_and_a_deadline_is_timeout(nats_server: NatsServer) -> None:
    engine = Blocking(limit=1)
    async with serving(nats_server, engine) as (client, _):
        first = await client.start(ask())
        await until(lambda: engine.running == 1, "the first generation never ran")
        with pytest.raises(QueueFull):
            await client.generate(ask())
        engine.release.set()
        assert (await first.result()).choices[0].text == "done"
        await first.close()
        engine.release.clear()
        with pytest.raises(DeadlineExceeded):
            await client.generate(ask(timeout_s=0.5))


async def test_closing_an_unfinished_generation_cancels_it(nats_server: NatsServer) -> None:
    engine = Blocking()
    async with serving(nats_server, engine) as (client, servers):
        gen = await client.start(ask())
        await asyncio.sleep(0.3)  # keepalives flow meanwhile, nothing else
        await gen.close()
        await until(lambda: not servers[0].live, "the server still runs the generation")
    assert engine.cancels == [gen.request.request_id] and not servers[0].live


async def test_a_server_that_goes_silent_is_noticed(nats_server: NatsServer) -> None:
    engine = Blocking()
    async with serving(nats_server, engine, keepalive_s=60, lost_after_s=0.5) as (client, _):
        gen = await client.start(ask())
        with pytest.raises(ModelUnavailable, match="stopped answering"):
            await gen.result()
        await gen.close()


async def test_the_model_list_is_answered_from_the_last_ping(nats_server: NatsServer) -> None:
    async with serving(nats_server, ScriptedEngine(["x"], name="m"), ScriptedEngine(["y"], name="m")) as (client, _):
        client.models_cache_s = 0.2
        first = await client.models()  # nothing known yet: waits for the ping
        assert list(first) == ["m"] and first["m"].slots == 4 and len(first["m"].instances) == 2
        await asyncio.sleep(0.3)  # older than models_cache_s now
        assert await client.models() is first  # stale: answered at once (no ping waited for), refreshed behind

        async def refreshed() -> object:
            models = await client.models()
            return models if models is not first else None

        assert list(await until(refreshed, "never refreshed behind")) == ["m"]


def test_served_models_come_from_model_servers_health() -> None:
    def reply(service: str, model: str | None, state: str = "ready", slots: int = 4) -> HealthReply:
        return HealthReply(service=service, instance=f"{service}@h:{slots}", pid=1, state=state, model=model,  # type: ignore[arg-type]
                           details={"slots": slots})

    found = served_models([
        reply("coder-agent", "big"), reply("coder-agent", "big", slots=2), reply("reasoner-agent", "small"),
        reply("router", "tiny"), reply("retriever", "embedder"), reply("reasoner-agent", None),
        reply("reasoner-agent", "gone", state="stopping"),
    ])
    assert list(found) == ["big", "small", "tiny"]
    assert (found["big"].services, found["big"].slots, len(found["big"].instances)) == (["coder-agent"], 6, 2)
    assert json.loads(json.dumps(found["tiny"].services)) == ["router"]


async def test_the_tiny_model_calls_a_required_tool_validly(nats_server: NatsServer, tmp_path: Any) -> None:
    """A real engine (random weights): the grammar alone makes its required call valid,
    end to end through the bus; a JSON schema answer parses."""
    from shared.llm.llama import EngineConfig, LlamaEngine
    from shared.llm.tiny import TinySpec, write_tiny_model

    model = write_tiny_model(tmp_path / "tiny.gguf", TinySpec(seed=3))
    engine = LlamaEngine(EngineConfig(model_path=model, name="m", pin=False, n_ctx=1024, slots=2))
    flag = ToolSpec(name="set_flag", parameters={"type": "object", "properties": {
        "on": {"type": "boolean"}, "level": {"type": "integer", "minimum": 0}}, "required": ["on", "level"]})
    try:
        async with serving(nats_server, engine) as (client, _):  # type: ignore[arg-type]
            called = await client.generate(ask(tools=[WEATHER, flag], tool_choice="function", tool_name="set_flag",
                                               temperature=1.0, seed=1, max_tokens=200))
            data = await client.generate(ask(json_schema={"type": "object", "properties": {"ok": {"type": "boolean"}},
                                                          "required": ["ok"]}, max_tokens=60, temperature=0.0))
    finally:
        engine.close()
    [call] = called.choices[0].tool_calls
    assert call.name == "set_flag" and isinstance(call.arguments["on"], bool) and called.choices[0].finish_reason == "tool_calls"
    assert isinstance(json.loads(data.choices[0].text)["ok"], bool)
