"""Function calling without a model: the streaming parser (any split of the output gives
the same calls and text), the schema checks, the conversation for native and plain
templates, and the grammar that forces a call (compiled by llama.cpp)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import ChatTurn, InvalidToolCall, ToolCall, ToolSpec
from shared.generation import tool_calls as tc

WEATHER = ToolSpec(name="get_weather", description="Weather in a city", parameters={
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city"]})
MULTIPLY = ToolSpec(name="multiply", parameters={
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
TOOLS = [WEATHER, MULTIPLY]


def call(name: str, **args: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


def run(pieces: list[str], tools: list[ToolSpec] = TOOLS) -> tuple[str, list[ToolCall], list[InvalidToolCall]]:
    parser = tc.CallParser(tools)
    out = [p for piece in pieces for p in parser.feed(piece)] + parser.close()
    text = "".join(p.text for p in out)
    return text, [p.call for p in out if p.call], [p.invalid for p in out if p.invalid]


def splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


OUTPUT = f"Let me check.\n{call('get_weather', city='Paris')}\n{call('multiply', a=3, b=4)}"


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_the_output_gives_the_same_calls_and_text(cuts: list[int]) -> None:
    text, calls, invalid = run(splits(OUTPUT, cuts))
    assert text == "Let me check."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"}), ("multiply", {"a": 3, "b": 4})]
    assert invalid == []
    assert all(c.id.startswith("call_") for c in calls) and len({c.id for c in calls}) == 2


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_plain_text_passes_unchanged_even_with_angle_brackets(cuts: list[int]) -> None:
    answer = "Use a < b and <tool> tags; x <tool_ca is no call.\n\nDone. "
    assert run(splits(answer, cuts)) == (answer, [], [])


def test_a_call_missing_its_closing_tag_is_still_read() -> None:
    text, calls, _ = run([call("multiply", a=2, b=5).removesuffix("</tool_call>")])
    assert text == "" and calls[0].arguments == {"a": 2, "b": 5}


@pytest.mark.parametrize(("raw", "error"), [
    ('{"name": "get_weather", "arguments": {"city": 3}}', "arguments do not match the schema of get_weather: city: 3 is not of type 'string'"),
    ('{"name": "get_weather", "arguments": {}}', "'city' is a required property"),
    ('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "K"}}', "unit: 'K' is not one of"),
    ('{"name": "launch", "arguments": {}}', "no tool named 'launch'"),
    ('{"name": "get_weather", "arguments": {"city": "Par', "not JSON"),
    ('["get_weather"]', "not a call"),
    ('{"name": "multiply", "arguments": "{\\"a\\": 1"}', "arguments are not JSON"),
])
def test_broken_calls_say_why(raw: str, error: str) -> None:
    found = tc.check_call(raw, {t.name: t for t in TOOLS})
    assert isinstance(found, InvalidToolCall) and error in found.error and found.raw == raw


def test_arguments_written_as_a_string_or_as_parameters_are_accepted() -> None:
    tools = {t.name: t for t in TOOLS}
    a = tc.check_call('{"name": "multiply", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}', tools)
    b = tc.check_call('{"name": "multiply", "parameters": {"a": 1, "b": 2}}', tools)
    assert isinstance(a, ToolCall) and isinstance(b, ToolCall) and a.arguments == b.arguments == {"a": 1, "b": 2}


def test_an_invalid_schema_is_named() -> None:
    assert tc.schema_error({"type": "object", "properties": {"a": {"type": "integr"}}}) is not None
    assert tc.schema_error(WEATHER.parameters) is None


HISTORY = [
    ChatTurn(role="system", content="Be brief."),
    ChatTurn(role="user", content="Weather in Paris and 3*4?"),
    ChatTurn(role="assistant", tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}),
                                           ToolCall(id="c2", name="multiply", arguments={"a": 3, "b": 4})]),
    ChatTurn(role="tool", content="sunny", tool_call_id="c1", name="get_weather"),
    ChatTurn(role="tool", content="12", tool_call_id="c2", name="multiply"),
]


def test_native_templates_get_calls_and_results_as_structures() -> None:
    msgs = tc.chat_messages(HISTORY, TOOLS, native=True)
    assert msgs[2]["tool_calls"][0] == {"id": "c1", "type": "function",
                                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    assert msgs[3] == {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"}


def test_plain_templates_get_the_instructions_and_the_history_as_text() -> None:
    msgs = tc.chat_messages(HISTORY, TOOLS, native=False)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("Be brief.\n\n# Tools") and '"name": "multiply"' in msgs[0]["content"]
    assert [(c.name, c.arguments) for c in run([msgs[2]["content"]])[1]] == [
        ("get_weather", {"city": "Paris"}), ("multiply", {"a": 3, "b": 4})]
    assert msgs[3]["content"] == "<tool_response>\nsunny\n</tool_response>\n<tool_response>\n12\n</tool_response>"
    assert tc.chat_messages(HISTORY[:2], [], native=False) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris and 3*4?"}]


def test_template_detection() -> None:
    assert tc.template_speaks_tools("{% if tools %}...<tool_call>...{% endif %}")
    assert not tc.template_speaks_tools("{% for message in messages %}{{ message.content }}{% endfor %}")


@pytest.mark.parametrize("parallel", [False, True])
def test_the_call_grammar_compiles_and_accepts_only_calls(parallel: bool) -> None:
    from llama_cpp import LlamaGrammar

    gbnf = tc.call_grammar(TOOLS, parallel=parallel)
    LlamaGrammar.from_string(gbnf, verbose=False)  # llama.cpp's own parser
    assert gbnf.startswith("root ::= tool-call") and ("{0,3}" in gbnf) == parallel
    assert '"get_weather"' in gbnf.replace('\\"', '"') and '"multiply"' in gbnf.replace('\\"', '"')


def test_a_schema_the_converter_cannot_express_is_named() -> None:
    assert "root ::=" in tc.schema_grammar({"type": "object", "properties": {"a": {"type": "integer"}}})
    with pytest.raises(Exception):  # noqa: B017 - whatever llama.cpp's converter raises
        tc.schema_grammar({"$ref": "https://example.com/remote.json"})


def test_model_names_become_one_subject_token() -> None:
    from shared import subjects

    assert subjects.model_generate("qwen2_5-coder-1_5b") == "syndicate.model.generate.qwen2_5-coder-1_5b"
    assert subjects.model_generate("qwen2.5 coder*>") == "syndicate.model.generate.qwen2_5_coder__"
    assert subjects.model_queue("a.b") == "model-a_b"


BARE = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
@pytest.mark.parametrize("output", [BARE, f"  {BARE}\n", f"```json\n{BARE}\n```",
                                    f'{BARE}\n{{"name": "multiply", "arguments": {{"a": 3, "b": 4}}}}',
                                    f'```json\n[{BARE}, {{"name": "multiply", "parameters": {{"a": 3, "b": 4}}}}]\n```',
                                    "{" + BARE + "}",  # doubled braces, as copied from a format string
                                    "<{" + BARE + "}", "<tool" + BARE,  # a cut-off tag before it (Agents SDK, 1.5B)
                                    "{" + BARE,  # only the opening brace doubled (Agents SDK, 1.5B)
                                    "{" + BARE + "}}"])  # doubled, one closing brace too many (Agents SDK, 1.5B)
def test_a_call_written_without_its_tags_is_read(output: str, cuts: list[int]) -> None:
    """What the Qwen2.5 0.5B writes under tool_choice auto (measured: bench/tool_calls.py)."""
    text, calls, invalid = run(splits(output, cuts))
    assert text == "" and invalid == [] and calls[0].name == "get_weather" and calls[0].arguments == {"city": "Paris"}
    assert len(calls) == output.count('"name"')


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
@pytest.mark.parametrize("fence_end", ["\n```", "\n```\n", ""])
def test_a_fenced_call_after_text_is_a_call(fence_end: str, cuts: list[int]) -> None:
    """The 1.5B under the Agents SDK: a sentence, then the call in a ```json fence (closed or not)."""
    text, calls, invalid = run(splits(f"Let me check the weather.\n\n```json\n{BARE}{fence_end}", cuts))
    assert text == "Let me check the weather." and invalid == [] and [c.name for c in calls] == ["get_weather"]


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
@pytest.mark.parametrize("output", ['Here it is:\n```json\n{"name": "Ada", "age": 36}\n```\nDone.',
                                    "Use `x` and ``y``:\n```python\nprint(1)\n```",
                                    'Try:\n```json\n{"name": "launch_rocket", "arguments": {}}\n``` then wait'])
def test_a_fenced_block_after_text_that_is_not_only_calls_stays_text(output: str, cuts: list[int]) -> None:
    assert run(splits(output, cuts)) == (output, [], [])


@pytest.mark.parametrize("output", [
    '{"name": "Ada", "age": 36}',                      # JSON the user asked for, no call's shape
    '{"city": "Paris"} is the answer',                 # not only JSON
    "```json\n[1, 2]\n```",
    "```python\nprint(1)\n```",
    '{"name": "get_weather", "arguments": {"city"',    # cut off
    '{{ a template }}',
    "<b>bold</b>",
    "<tool_call",
])
def test_json_that_is_not_a_call_stays_text(output: str) -> None:
    assert run([output]) == (output, [], [])


def test_a_bare_call_of_an_unknown_tool_is_flagged_and_kept_as_written() -> None:
    output = '{"name": "launch_rocket", "arguments": {}}'
    text, calls, invalid = run([output])
    assert text == output and calls == [] and "no tool named 'launch_rocket'" in invalid[0].error


def test_a_tagged_call_with_doubled_braces_is_read() -> None:
    text, calls, invalid = run([f"<tool_call>\n{{{BARE}}}\n</tool_call>"])
    assert text == "" and invalid == [] and calls[0].arguments == {"city": "Paris"}
