"""Tests the model writes from the task, and which of them are *rule checks*.

The model is asked for one assert per rule the task states, each under a comment quoting
the task's words it checks (prompts.tests_request). A written assert is a **rule check**
when its quote really is the task's (most of its words are in the task's text) and every
value it expects comes from the task's text too — a bool or None, or a string or number
the task writes (``'FizzBuzz'`` in "'FizzBuzz' for multiples of both"). Such a check
restates the task: agreement among candidates never drops it (a mistake most samples
share must not win the vote against it). Every other assert is a plain model test, whose
expected value the model worked out itself and which the candidates' agreement may drop.

Only ``assert`` statements are kept: anything else (a helper, or the function itself
written again) would run in the candidate's namespace and could make any program pass.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

from services.coder_agent.checks import MAX_CHECKS

_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTE_SHARE = 0.8  # share of a quote's words the task must hold
_STOP = frozenset(["a", "an", "the", "of", "to", "and", "or", "is", "are", "be", "it", "its", "for", "in", "on", "by", "as", "at", "with", "that", "this", "if"])


@dataclass(frozen=True)
class ModelTest:
    source: str  # one assert statement
    quote: str = ""  # the task's words it says it checks (its comment)
    rule: bool = False  # a rule check: quote and expected values are the task's own


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def quotes_task(quote: str, task: str) -> bool:
    """The quote is the task's: at least two content words, most of them in the task."""
    words = _words(quote)
    if len(words) < 2:
        return False
    have = set(_words(task))
    return sum(w in have for w in words) >= _QUOTE_SHARE * len(words)


def _calls_subject(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names for n in ast.walk(node))


def calls_any(stmt: str, names: list[str]) -> bool:
    """The statement calls one of ``names`` (a test that calls none checks nothing of the
    answer: the 1.5B copied the tests request's own example, ``largest([3, 9, 2])``, for
    is_prime). True when no names are known."""
    if not names:
        return True
    try:
        return _calls_subject(ast.parse(stmt), set(names))
    except SyntaxError:
        return False


def _stated(value: object, task: str) -> bool:
    """An expected value the task's text states itself."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):  # as a word of its own: "1" is not stated by "10"
        return bool(value.strip()) and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", task) is not None
    if isinstance(value, int | float):
        return str(value) in _NUMBER.findall(task) or repr(value) in task
    return False


def expects_stated_values(stmt: str, names: set[str], task: str) -> bool:
    """Every value the assert expects (the constants on the side of a comparison that
    does not call the task's function) is one the task's text states."""
    try:
        node = ast.parse(stmt).body[0]
    except (SyntaxError, IndexError):
        return False
    if not isinstance(node, ast.Assert):
        return False
    test = node.test
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test = test.operand
    if isinstance(test, ast.Call):
        return _calls_subject(test, names)  # assert is_prime(7): expects True
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    subject = [s for s in sides if _calls_subject(s, names)]
    expected = [s for s in sides if not _calls_subject(s, names)]
    if len(subject) != 1 or len(expected) != 1:
        return False
    consts = [n.value for n in ast.walk(expected[0]) if isinstance(n, ast.Constant)]
    return bool(consts) and all(_stated(v, task) for v in consts)


def _comments(block: str) -> dict[int, str]:
    """Line number (1-based) -> the text of the comment on it (read with tokenize, so a
    ``#`` inside a string is no comment; a block cut off mid-line falls back to lines)."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(block).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip().strip("'\"` ")
    except (tokenize.TokenError, IndentationError, SyntaxError):
        for n, line in enumerate(block.splitlines(), 1):
            if line.lstrip().startswith("#"):
                out[n] = line.lstrip().lstrip("#").strip().strip("'\"` ")
    return out


def _asserts(block: str) -> list[tuple[int, str]]:
    """(line number, source) of each top-level assert of ``block``; when the block does
    not parse (cut off), of each line that is an assert on its own."""
    try:
        tree = ast.parse(block)
    except SyntaxError:
        out = []
        for n, line in enumerate(block.splitlines(), 1):
            try:
                node = ast.parse(line.strip()).body[0]
            except (SyntaxError, IndexError):
                continue
            if isinstance(node, ast.Assert):
                out.append((n, ast.get_source_segment(line.strip(), node) or ""))
        return out
    return [(node.lineno, ast.get_source_segment(block, node) or "") for node in tree.body if isinstance(node, ast.Assert)]


def parse_model_tests(block: str, task: str, names: list[str], limit: int = MAX_CHECKS) -> list[ModelTest]:
    """The asserts of a written test block, each with its quote (a comment on its line or
    the line above) and whether it is a rule check of ``task`` (whose functions are ``names``)."""
    comments = _comments(block)
    lines = block.splitlines()
    subject = set(names)
    out: list[ModelTest] = []
    for n, src in _asserts(block):
        src = src.strip()
        if not src:
            continue
        quote = comments.get(n, "")
        if not quote and n >= 2 and lines[n - 2].lstrip().startswith("#"):
            quote = comments.get(n - 1, "")
        quoted = bool(quote) and bool(subject) and quotes_task(quote, task)
        rule = quoted and expects_stated_values(src, subject, task)
        out.append(ModelTest(source=src, quote=quote, rule=rule))
        if quoted and not rule:
            out += [ModelTest(source=d, quote=quote, rule=True) for d in stated_items(src, subject, task)]
    return list({t.source: t for t in out}.values())[:limit]


def stated_items(stmt: str, names: set[str], task: str, most: int = 3) -> list[str]:
    """Rule checks inside a model test that expects a list: ``assert fizzbuzz(15) == ['1',
    ..., 'FizzBuzz']`` gives ``fizzbuzz(15)[14] == 'FizzBuzz'`` — one per distinct string the
    task's text states (first place each; not a numeral), the last ``most``. The whole list holds values the
    model worked out ('2', '4'), so agreement may drop it; these items restate the task, so
    a mistake most samples share (no 'FizzBuzz') cannot outvote them."""
    try:
        node = ast.parse(stmt).body[0]
    except (SyntaxError, IndexError):
        return []
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
            and isinstance(node.test.ops[0], ast.Eq)):
        return []
    call, expected = node.test.left, node.test.comparators[0]
    if not _calls_subject(call, names):
        call, expected = expected, call
    if not _calls_subject(call, names) or not isinstance(expected, ast.List | ast.Tuple):
        return []
    out: dict[object, str] = {}
    for i, item in enumerate(expected.elts):
        if not isinstance(item, ast.Constant) or isinstance(item.value, bool) or item.value is None:
            continue
        # Words only: a numeral the task happens to hold ('1' of "1 to n") is no rule of it.
        word = isinstance(item.value, str) and not item.value.strip().lstrip("-").isdigit()
        if word and item.value not in out and _stated(item.value, task):
            out[item.value] = f"assert {ast.unparse(call)}[{i}] == {item.value!r}"
    return list(out.values())[-most:]  # the last: the rarest rule usually shows latest (15: 'FizzBuzz')
