"""The task's own checks, the ones the coder trusts: its test files (``test_*.py``), assert
lines in its text, doctest examples (``>>> f(2)`` / ``4``) and examples written in prose
(``f([1, 2]) == [2, 1]``, ``f("ab") => 3``, ``f(7) should return True.``) for the
functions the task defines or names.

A prose example becomes a check only when its whole right side is one Python literal:
``double([1, 3]) == 1 + 9 = 10`` or a recurrence such as ``tri(n) = 1 + n / 2`` is prose,
not an example, and is skipped rather than turned into a wrong check.
"""

from __future__ import annotations

import ast
import doctest
import re
from dataclasses import dataclass, field

from services.coder_agent.checks import split_checks
from shared.contracts import FileIn

# Separators between a call and its value in prose examples, longest first.
_SEPARATORS = re.compile(r"\s*(==>|=>|==|->|➞|→|should\s+return|returns|gives|is|=)\s*", re.IGNORECASE)
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_NAMED = re.compile(r"\b(?:function|method|def|write|implement|define|fix)\s+`?([A-Za-z_]\w*)`?\s*\(", re.IGNORECASE)
_TRAILING = ".,;: \t"


def task_function_names(text: str) -> list[str]:
    """Functions the task defines (``def f(``) or names ("a function f(n) that ...")."""
    names = _DEF.findall(text) + _NAMED.findall(text)
    return list(dict.fromkeys(n for n in names if not n.startswith("_")))


def doctest_checks(text: str, limit: int = 50) -> list[str]:
    """``>>> f(2)`` / ``4`` examples of a task (HumanEval-style docstrings) as assert checks."""
    checks: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return checks
    for ex in examples:
        source = ex.source.strip()
        # The closing quotes of a docstring right after an example belong to no output.
        want = "\n".join(ln for ln in ex.want.splitlines() if ln.strip() not in ('"""', "'''")).strip()
        if not want or "\n" in source or "\n" in want:
            continue
        try:
            ast.parse(source, mode="eval")
            ast.parse(want, mode="eval")
        except SyntaxError:
            continue
        checks.append(f"assert {source} == {want}")
    return checks[:limit]


def _call_prefix(s: str) -> str | None:
    """The shortest prefix of ``s`` that is a complete call expression ``name(...)``."""
    for end in (i + 1 for i, ch in enumerate(s) if ch == ")"):
        try:
            node = ast.parse(s[:end], mode="eval").body
        except SyntaxError:
            continue
        return s[:end] if isinstance(node, ast.Call) else None
    return None


def _literal(s: str) -> str | None:
    """``s`` (minus trailing punctuation) when it is exactly one Python literal."""
    s = s.strip().rstrip(_TRAILING)
    if not s:
        return None
    try:
        ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return s


def prose_checks(text: str, names: list[str] | None = None, limit: int = 50) -> list[str]:
    """Examples written in prose, one per line, for the task's functions, as assert checks."""
    names = task_function_names(text) if names is None else names
    if not names:
        return []
    call_start = re.compile(r"(?<![\w.>])(" + "|".join(map(re.escape, names)) + r")\s*\(")
    checks: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith((">>>", "assert ", "def ", "#")):
            continue  # doctests and asserts are read elsewhere; definitions are no examples
        for m in call_start.finditer(line):
            call = _call_prefix(line[m.start():])
            if call is None:
                continue
            rest = line[m.start() + len(call):]
            sep = _SEPARATORS.match(rest)
            value = _literal(rest[sep.end():]) if sep else None
            if value is not None:
                checks.append(f"assert {call} == {value}")
                break
    return list(dict.fromkeys(checks))[:limit]


def text_checks(text: str) -> list[str]:
    """Every example the task's text states: assert lines, doctests and prose examples."""
    asserts = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("assert ")]
    return list(dict.fromkeys(asserts + doctest_checks(text) + prose_checks(text)))


@dataclass
class TrustedChecks:
    """Checks from the task itself, and the set-up statements its test files need."""

    checks: list[str] = field(default_factory=list)
    prelude: list[str] = field(default_factory=list)


def is_test_file(f: FileIn) -> bool:
    return f.path.rsplit("/", 1)[-1].startswith("test_")


def trusted_checks(text: str, files: list[FileIn]) -> TrustedChecks:
    """A test file's asserts and a call of each of its ``test*`` functions (its imports,
    helpers and assignments become set-up), then the examples in the task's text."""
    out = TrustedChecks()
    for f in filter(is_test_file, files):
        try:
            tree = ast.parse(f.content)
        except SyntaxError:
            out.checks += split_checks(f.content, limit=200)
            continue
        for node in tree.body:
            src = ast.get_source_segment(f.content, node) or ""
            (out.checks if isinstance(node, ast.Assert | ast.Expr) else out.prelude).append(src)
        out.checks += [f"{n.name}()" for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    out.checks = list(dict.fromkeys(out.checks + text_checks(text)))
    return out
