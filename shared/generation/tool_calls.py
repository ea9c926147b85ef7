"""Function calling for model requests: the conversation as the model's template wants it,
what the model writes parsed into calls (streaming), each call checked against its tool's
JSON schema, and the grammar that forces a valid call (tool_choice required / a function).

The format is the one Qwen2.5's template teaches (Hermes style)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A template that renders ``tools`` and speaks this format (Qwen2.5, SmolLM2, Hermes) gets
the tools and the history's calls and results natively; any other template gets the same
instructions in its system message and the history folded into text, so every instruct
model can call tools the same way. One parser serves both (and the OpenAI and Ollama routes).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from shared.contracts import ChatTurn, InvalidToolCall, ToolCall, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_REQUIRED_CALLS = 4  # tool_choice required with parallel calls: at most this many


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def template_speaks_tools(template: str) -> bool:
    """Whether a chat template renders ``tools`` itself in the format this module parses."""
    return "tools" in template and OPEN in template


# --- the conversation --------------------------------------------------------------------
def tool_json(tool: ToolSpec) -> dict[str, Any]:
    """A tool as OpenAI's ``tools[]`` entry (what chat templates iterate over)."""
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters}}


def call_text(call: ToolCall) -> str:
    """A call written the way the model writes one."""
    return f"{OPEN}\n{json.dumps({'name': call.name, 'arguments': call.arguments}, ensure_ascii=False)}\n{CLOSE}"


def instructions(tools: list[ToolSpec]) -> str:
    """The tool instructions for a template that does not render tools itself."""
    listing = "\n".join(json.dumps(tool_json(t), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to help with the user's request. "
        f"The functions, one JSON signature per line, inside <tools></tools>:\n<tools>\n{listing}\n</tools>\n\n"
        "To call a function, answer with a JSON object holding its name and arguments inside "
        f"{OPEN}{CLOSE} tags, one per call:\n{OPEN}\n"
        '{"name": <function-name>, "arguments": <arguments-json-object>}\n'
        f"{CLOSE}\nA function's result comes back inside <tool_response></tool_response> tags. "
        "When no function fits, answer in plain text."
    )


def chat_messages(turns: list[ChatTurn], tools: list[ToolSpec], *, native: bool) -> list[dict[str, Any]]:
    """The engine's messages for a conversation: tool calls and results as the template
    renders them (``native``), or as text with the tool instructions in the system message."""
    if native:
        return [_native(t) for t in turns]
    out: list[dict[str, Any]] = []
    if tools:
        system = instructions(tools)
        if turns and turns[0].role == "system":
            system = f"{turns[0].content}\n\n{system}"
            turns = turns[1:]
        out.append({"role": "system", "content": system})
    for t in turns:
        if t.role == "tool":
            result = f"<tool_response>\n{t.content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + result  # one user turn holds consecutive results
            else:
                out.append({"role": "user", "content": result, "tool_results": True})
        elif t.role == "assistant" and t.tool_calls:
            text = "\n".join([t.content.strip(), *(call_text(c) for c in t.tool_calls)] if t.content.strip()
                             else [call_text(c) for c in t.tool_calls])
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": t.role, "content": t.content})
    for m in out:
        m.pop("tool_results", None)
    return out


def _native(t: ChatTurn) -> dict[str, Any]:
    m: dict[str, Any] = {"role": t.role, "content": t.content}
    if t.tool_calls:
        m["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                           for c in t.tool_calls]
    if t.role == "tool":
        if t.tool_call_id:
            m["tool_call_id"] = t.tool_call_id
        if t.name:
            m["name"] = t.name
    return m


# --- a call the conversation already answered ----------------------------------------------
# Small models asked to go on after a tool's result often call the same tool again with the
# same arguments (the Qwen2.5 1.5B and 0.5B do on "What is the weather in Paris?"), and a
# client that runs every call it gets loops for ever. Such a repeat is not handed back: the
# model is asked once more with this note after the results and no call allowed (measured:
# both models then answer from the result, "The weather in Paris is 22°C and sunny.").
REPEAT_NOTE = ("The results above answer the calls made. Answer the user's question from them in plain text; "
               "do not call a tool again.")
NO_CALL_GRAMMAR = "root ::= [^{<`\\[] [^\\x00]*"  # any text that does not open a call or a fence


# A call of a tool the request does not offer, and nothing else: the 0.5B does this where no
# tool fits ("What is the capital of France?" -> a call of an invented `search`; measured:
# bench/tool_calls.py, plain answers where none fits 4 of 8). Under `auto` the model is asked
# once more with this note and no call allowed, so the client gets an answer, not a flag.
def unknown_tool_note(names: list[str]) -> str:
    listed = ", ".join(repr(n) for n in dict.fromkeys(names))
    return f"There is no tool named {listed}. Answer the request directly in plain text; do not call a tool."


def call_key(name: str, arguments: dict[str, Any]) -> str:
    return json.dumps([name, arguments], sort_keys=True, ensure_ascii=False)


def answered_calls(turns: list[ChatTurn]) -> set[str]:
    """The calls made since the user's last message that a tool result followed (keys of
    call_key): calling one of them again would only repeat it."""
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=-1)
    keys: set[str] = set()
    pending: set[str] = set()
    for t in turns[last_user + 1:]:
        if t.role == "assistant":
            pending |= {call_key(c.name, c.arguments) for c in t.tool_calls}
        elif t.role == "tool":
            keys |= pending
    return keys


def with_repeat_note(turns: list[ChatTurn]) -> list[ChatTurn]:
    """The conversation with REPEAT_NOTE after its last tool result."""
    return with_note(turns, REPEAT_NOTE, roles=("tool",))


def with_note(turns: list[ChatTurn], note: str, roles: tuple[str, ...] = ("user", "tool")) -> list[ChatTurn]:
    """The conversation with ``note`` after the content of its last turn of ``roles``."""
    last = max(i for i, t in enumerate(turns) if t.role in roles)
    out = list(turns)
    out[last] = turns[last].model_copy(update={"content": f"{turns[last].content or ''}\n\n{note}".lstrip()})
    return out


# --- what the model wrote -----------------------------------------------------------------
def check_call(raw: str, tools: dict[str, ToolSpec]) -> ToolCall | InvalidToolCall:
    """A call from the JSON the model wrote between the tags: a known tool, arguments that
    its schema accepts; else an InvalidToolCall saying why."""
    text = raw.strip()
    try:
        obj = json.loads(text)
    except ValueError as exc:
        obj = _undoubled(text)
        if obj is None:
            return InvalidToolCall(raw=raw, error=f"not JSON: {exc}")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return InvalidToolCall(raw=raw, error='not a call: expected {"name": ..., "arguments": {...}}')
    name = obj["name"]
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            return InvalidToolCall(raw=raw, name=name, error=f"arguments are not JSON: {exc}")
    if name not in tools:
        return InvalidToolCall(raw=raw, name=name, error=f"no tool named {name!r} (tools: {', '.join(tools)})")
    if not isinstance(args, dict):
        return InvalidToolCall(raw=raw, name=name, error="arguments are not a JSON object")
    problem = schema_problem(tools[name].parameters, args)
    if problem:
        return InvalidToolCall(raw=raw, name=name, error=f"arguments do not match the schema of {name}: {problem}")
    return ToolCall(id=new_call_id(), name=name, arguments=args)


def schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """The first reason ``value`` breaks ``schema`` (``at path: message``), or None."""
    validator = validator_for(schema)(schema)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def schema_error(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON schema, or None."""
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None


@dataclass
class Piece:
    """One output of the parser: text, a valid call, or an invalid one."""

    text: str = ""
    call: ToolCall | None = None
    invalid: InvalidToolCall | None = None


class CallParser:
    """Splits streamed model output into text and tool calls. Text that could be the start
    of a ``<tool_call>`` tag, and whitespace that may only separate calls, is held back
    until the next piece decides; a call is given out whole, once its closing tag (or the
    end of the output) arrives, and checked first.

    Small models often write the call's JSON without the tags (the Qwen2.5 0.5B answers
    "weather in Paris?" with a bare ``{"name": "get_weather", "arguments": ...}``, also in a
    ```json fence). An output that *starts* so is held to its end and read as calls when
    every object in it has a ``name`` and ``arguments``; otherwise it is the text it was."""

    def __init__(self, tools: Iterable[ToolSpec]) -> None:
        self.tools = {t.name: t for t in tools}
        self._buf = ""
        self._inside = False
        self._bare: bool | None = None  # undecided until the output's first characters show
        self.calls = 0

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        if self._bare is None:
            head = self._buf.lstrip()
            if not head or any(t.startswith(head) and len(head) < len(t) for t in (BARE_FENCE, OPEN)):
                return []  # not yet known
            self._bare = head[_stray_open(head):].startswith(("{", BARE_FENCE))
        if self._bare:
            return []  # held to the end: close() decides
        out: list[Piece] = []
        while True:
            if self._inside:
                end = self._buf.find(CLOSE)
                if end < 0:
                    return out
                out.append(self._call(self._buf[:end]))
                self._buf = self._buf[end + len(CLOSE):]
                self._inside = False
                continue
            start, fence = self._buf.find(OPEN), self._buf.find(BARE_FENCE)
            if fence >= 0 and (start < 0 or fence < start):
                # A ```json block after text is held until it closes: all calls, it is calls
                # (the 1.5B under the Agents SDK wrote "...:\n```json\n{call}\n```"), else text.
                end = self._buf.find("```", fence + len(BARE_FENCE))
                lead = self._buf[:fence].rstrip()
                if end < 0:
                    if lead:
                        out.append(Piece(text=lead))
                        self._buf = self._buf[len(lead):]
                    return out
                out += self._fenced(lead, self._buf[len(lead):end + 3])
                self._buf = self._buf[end + 3:]
                continue
            if start >= 0:
                if self._buf[:start].strip():  # whitespace before a call only separates
                    out.append(Piece(text=self._buf[:start].rstrip()))
                self._buf = self._buf[start + len(OPEN):]
                self._inside = True
                continue
            keep = _held(self._buf)
            if self._buf[: len(self._buf) - keep].strip():
                out.append(Piece(text=self._buf[: len(self._buf) - keep]))
                self._buf = self._buf[len(self._buf) - keep:]
            return out

    def close(self) -> list[Piece]:
        """The rest at the end of the output (a call missing its closing tag is still read)."""
        if self._bare is not False:
            held, self._buf, self._bare = self._buf, "", False
            found = bare_calls(held, self.tools)
            if found is not None:
                self.calls += sum(p.call is not None for p in found)
                return found
            return self.feed(held) + self.close()
        rest, self._buf = self._buf, ""
        if not self._inside and rest.lstrip().startswith(BARE_FENCE):  # a block never closed
            return self._fenced("", rest)
        if self._inside:
            self._inside = False
            return [self._call(rest)] if rest.strip() else []
        if self.calls:  # trailing whitespace after calls is no answer
            return [Piece(text=rest.rstrip())] if rest.strip() else []
        return [Piece(text=rest)] if rest else []

    def _fenced(self, lead: str, block: str) -> list[Piece]:
        """Text ``lead`` then a ```json ``block``: its calls when it holds only calls."""
        found = bare_calls(block, self.tools)
        if found is not None and all(p.call is not None for p in found):
            self.calls += len(found)
            return ([Piece(text=lead)] if lead else []) + found
        return [Piece(text=lead + block)]

    def _call(self, raw: str) -> Piece:
        found = check_call(raw, self.tools)
        if isinstance(found, ToolCall):
            self.calls += 1
            return Piece(call=found)
        return Piece(invalid=found)


BARE_FENCE = "```json"


def bare_calls(text: str, tools: dict[str, ToolSpec]) -> list[Piece] | None:
    """The calls of an output that is only call-shaped JSON objects (one or more, or a list
    of them; a ```json fence around them allowed), each checked; None when it is anything
    else (then it is plain text). An object of the call's shape naming an unknown tool is
    an invalid call, whose text stays what the model wrote. A stray start of the call tag
    before the JSON (``<{"name": ...}``: the 1.5B under the Agents SDK) is no answer."""
    body = text.strip()
    body = body[_stray_open(body):]
    if body.startswith(BARE_FENCE):
        body = body[len(BARE_FENCE):].removesuffix("```").strip()
    undoubled = _undoubled(body)
    if undoubled is not None:
        body = json.dumps(undoubled, ensure_ascii=False)
    decoder, objects, at = json.JSONDecoder(), [], 0
    while at < len(body):
        try:
            obj, end = decoder.raw_decode(body, at)
        except ValueError:
            return None
        objects.extend(obj if isinstance(obj, list) else [obj])
        at = end
        while at < len(body) and body[at] in " \t\r\n,":
            at += 1
    shaped = [o for o in objects if isinstance(o, dict) and isinstance(o.get("name"), str)
              and ("arguments" in o or "parameters" in o)]
    if not objects or len(shaped) != len(objects):
        return None
    pieces = []
    for o in objects:
        found = check_call(json.dumps(o, ensure_ascii=False), tools)
        pieces.append(Piece(call=found) if isinstance(found, ToolCall) else Piece(invalid=found))
    if any(p.invalid for p in pieces):  # not all calls: the output stays as written, flagged
        return [Piece(text=text, invalid=next(p.invalid for p in pieces if p.invalid))]
    return pieces


def _stray_open(text: str) -> int:
    """The length of a cut-off start of the call tag right before a ``{`` (``<{...}``)."""
    return next((k for k in range(len(OPEN) - 1, 0, -1) if text.startswith(OPEN[:k] + "{")), 0)


def _undoubled(text: str) -> Any:
    """The JSON of ``{{"name": ..., "arguments": {...}}}``, or None: models copy the doubled
    braces of format strings in their instructions (seen with the OpenAI Agents SDK on the
    Qwen2.5 1.5B). Only text that is not JSON as written is read so."""
    while text.startswith("{{"):
        # Both doubled, or only the opening one (`{{"name": ..., "arguments": {...}}`, seen too).
        for inner in ([text[1:-1]] if text.endswith("}}") else []) + [text[1:]]:
            try:
                return _loads_closed(inner)
            except ValueError:
                continue
        text = text[1:-1] if text.endswith("}}") else text[1:]
    return None


def _loads_closed(text: str) -> Any:
    """The JSON value ``text`` starts with, when nothing but closing braces follow it (a
    model that doubled the braces may write one too many: `{{"name": ..., {...}}}}`)."""
    obj, end = json.JSONDecoder().raw_decode(text)
    if text[end:].replace("}", "").strip():
        raise ValueError("text after the JSON value")
    return obj


def _held(buf: str) -> int:
    """How many trailing characters to hold: a prefix of the opening tag (or of a ```json
    fence), and the whitespace before it (it may only separate two calls)."""
    keep = max(next((k for k in range(min(len(tag) - 1, len(buf)), 0, -1) if buf.endswith(tag[:k])), 0)
               for tag in (OPEN, BARE_FENCE))
    body = buf[: len(buf) - keep]
    return keep + (len(body) - len(body.rstrip()))


# --- the grammar that forces a call -------------------------------------------------------
def call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The JSON schema of one call of any of ``tools``."""
    options = [{
        "type": "object",
        "properties": {"name": {"const": t.name}, "arguments": t.parameters or {"type": "object"}},
        "required": ["name", "arguments"],
    } for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_grammar(tools: list[ToolSpec], *, parallel: bool) -> str:
    """A GBNF grammar (llama.cpp's) whose every sentence is one call — up to
    MAX_REQUIRED_CALLS with ``parallel`` — of the given tools, arguments matching their
    schemas, in the tagged format."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    schema = converter.resolve_refs(call_schema(tools), "")
    converter.visit(schema, "call-json")
    rules = converter.format_grammar()
    more = f' ("\\n" tool-call){{0,{MAX_REQUIRED_CALLS - 1}}}' if parallel else ""
    return (f"root ::= tool-call{more}\n"
            f'tool-call ::= "{OPEN}\\n" call-json "\\n{CLOSE}"\n{rules}')


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar of a JSON schema (raises when llama.cpp's converter cannot express it)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(schema))
