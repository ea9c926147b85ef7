"""What model requests ask of the engine, on the tiny model: a raw prompt, tools rendered by
a template that knows them, a GBNF grammar that forces a valid tool call (even random
weights then write one), sampling knobs and penalties that are honoured and reproducible."""

from __future__ import annotations

from typing import Any

from shared.contracts import ToolSpec
from shared.generation import tool_calls as tc
from shared.llm.base import GenerationRequest
from shared.llm.prompt import PromptRenderer

ADD = ToolSpec(name="add", parameters={"type": "object", "properties": {
    "a": {"type": "integer"}, "b": {"type": "integer"}, "unit": {"type": "string", "enum": ["m", "s"]}},
    "required": ["a", "b", "unit"]})
NAME = ToolSpec(name="name", parameters={"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]})
HELLO = [{"role": "user", "content": "Add 2 and 3."}]


async def test_a_grammar_makes_even_random_weights_call_a_tool_validly(engine: Any) -> None:
    for seed in range(1):
        for parallel in (False, True):
            req = GenerationRequest(messages=HELLO, grammar=tc.call_grammar([ADD, NAME], parallel=parallel),
                                    temperature=1.0, seed=seed, max_tokens=400)
            out = await engine.generate(req)
            parser = tc.CallParser([ADD, NAME])
            pieces = parser.feed(out.text) + parser.close()
            assert out.finish_reason == "stop", out.text
            assert pieces and all(p.call is not None for p in pieces), out.text
            assert parallel or len(pieces) == 1


async def test_a_raw_prompt_is_tokenized_as_it_is(engine: Any) -> None:
    raw = await engine.generate(GenerationRequest(prompt="def add(a, b):", max_tokens=4))
    chat = await engine.generate(GenerationRequest(messages=[{"role": "user", "content": "def add(a, b):"}], max_tokens=4))
    assert raw.input_tokens <= len("def add(a, b):") + 1  # byte vocabulary (and BOS if any): no template
    assert chat.input_tokens > raw.input_tokens


async def test_sampling_knobs_are_honoured_and_seeded(engine: Any) -> None:
    def req(**kw: Any) -> GenerationRequest:
        return GenerationRequest(messages=HELLO, temperature=0.9, seed=5, max_tokens=24, **kw)

    a = await engine.generate(req(top_k=5, top_p=0.9, min_p=0.1, repeat_penalty=1.3, presence_penalty=0.5,
                                  frequency_penalty=0.5))
    b = await engine.generate(req(top_k=5, top_p=0.9, min_p=0.1, repeat_penalty=1.3, presence_penalty=0.5,
                                  frequency_penalty=0.5))
    one = await engine.generate(req(top_k=1))
    greedy = await engine.generate(GenerationRequest(messages=HELLO, temperature=0.0, max_tokens=24))
    assert a.text == b.text  # same seed, same knobs
    assert one.text == greedy.text  # top_k 1 is greedy whatever the temperature
    # Penalties change greedy output: the argmax shortcut must not skip them.
    penalized = await engine.generate(GenerationRequest(messages=HELLO, temperature=0.0, max_tokens=48,
                                                        repeat_penalty=5.0))
    plain = await engine.generate(GenerationRequest(messages=HELLO, temperature=0.0, max_tokens=48))
    assert penalized.text != plain.text


def test_a_template_that_knows_tools_renders_them_and_the_history(engine: Any) -> None:
    template = (
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}"
        "{% for m in messages %}[{{ m.role }}]{{ m.content or '' }}"
        "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}{{ c.function.arguments | tojson }}</tool_call>{% endfor %}"
        "\n{% endfor %}[assistant]"
    )
    renderer = PromptRenderer(engine._llama.lc, engine._llama.model, {"tokenizer.chat_template": template})
    assert tc.template_speaks_tools(renderer.template)
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
                {"role": "tool", "content": "3", "tool_call_id": "c1"}]
    tokens = renderer.tokens(GenerationRequest(messages=messages, tools=[tc.tool_json(ADD), tc.tool_json(NAME)]))
    text = engine._llama.model.detokenize(tokens, special=True).decode()
    assert text == '<tools>add;name;</tools>\n[user]hi[assistant]<tool_call>add{"a": 1, "b": 2}</tool_call>[tool]3[assistant]'

