"""The evolved function inside a program: split the seed into the part that never changes
and the function, turn a model's answer (``priority_v2`` and maybe helpers) into a whole
program again, and rename a function for a prompt (``priority`` -> ``priority_v1``).

A program of a run is ``skeleton + evolved code``: the skeleton is the seed without the
evolved function (its imports and constants), the evolved code is the function and any
helpers the model wrote beside it. Prompts show the evolved code only.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass


class NoFunction(ValueError):
    """The answer holds no usable definition of the evolved function."""


@dataclass(frozen=True)
class Split:
    skeleton: str  # the program without the evolved function
    evolved: str  # the evolved function's source (decorators included)


def _segment(lines: list[str], node: ast.AST) -> tuple[int, int]:
    """0-based [start, end) line range of a top-level definition, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)]) - 1  # type: ignore[attr-defined]
    end = node.end_lineno or node.lineno  # type: ignore[attr-defined]
    return start, end


def split_program(code: str, function: str) -> Split:
    """Split a program (the seed) into its skeleton and the evolved function."""
    tree = ast.parse(code)
    lines = code.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            a, b = _segment(lines, node)
            skeleton = "\n".join(lines[:a] + lines[b:]).strip()
            return Split(skeleton + "\n" if skeleton else "", "\n".join(lines[a:b]) + "\n")
    raise NoFunction(f"the program defines no function {function}()")


def rename(code: str, old: str, new: str) -> str:
    """``code`` with the name ``old`` (its definition and calls: identifiers, not words in
    strings or comments) named ``new``. Code that does not tokenize is renamed word-wise."""
    try:
        spots = [t.start for t in tokenize.generate_tokens(io.StringIO(code).readline)
                 if t.type == tokenize.NAME and t.string == old]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(rf"\b{re.escape(old)}\b", new, code)
    lines = code.splitlines(keepends=True)
    for row, col in reversed(spots):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[col + len(old):]
    return "".join(lines)


def _version_re(function: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(function)}(?:_v(\d+))?$")


def evolved_from_answer(answer: str, function: str, version: int) -> str:
    """The evolved code in a model's answer: the definition of ``<function>_v<version>``
    (else the highest other version, else ``<function>`` itself) renamed to
    ``<function>``, with the imports, helper functions, classes and constants beside it.
    Earlier versions the model copied back and top-level demo code are dropped."""
    try:
        tree = ast.parse(answer)
    except SyntaxError as exc:
        raise NoFunction(f"SyntaxError: {exc.msg} (line {exc.lineno})") from exc
    lines = answer.splitlines()
    pattern = _version_re(function)
    candidates: list[tuple[int, ast.AST, str]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (m := pattern.match(node.name)):
            v = int(m.group(1)) if m.group(1) is not None else -1
            rank = 10**6 if v == version else (v if v >= 0 else 10**5)  # asked version > bare name > newest
            candidates.append((rank, node, node.name))
    if not candidates:
        raise NoFunction(f"the answer defines no function {function}_v{version}()")
    _, target, name = max(candidates, key=lambda c: c[0])
    keep: list[str] = []
    for node in tree.body:
        if node is target:
            a, b = _segment(lines, node)
            keep.append(rename("\n".join(lines[a:b]), name, function))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not pattern.match(node.name):
                a, b = _segment(lines, node)
                keep.append("\n".join(lines[a:b]))
        elif isinstance(node, ast.Import | ast.ImportFrom) or _is_constant(node):
            a, b = _segment(lines, node)
            keep.append("\n".join(lines[a:b]))
    return "\n\n".join(keep).strip() + "\n"


def _is_constant(node: ast.AST) -> bool:
    """A top-level assignment of a literal (``EPS = 1e-9``): kept; anything that calls code
    at import time (example usage, prints) is not."""
    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        return not any(isinstance(n, ast.Call) for n in ast.walk(node.value))
    return False


def assemble(skeleton: str, evolved: str) -> str:
    """The whole program: the seed's skeleton, then the evolved code."""
    return (skeleton.rstrip() + "\n\n\n" + evolved.strip() + "\n") if skeleton.strip() else evolved.strip() + "\n"


def check_defines(code: str, function: str) -> str | None:
    """Why ``code`` cannot be a program with ``function`` (None when it parses and defines it)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    if not any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function for n in tree.body):
        return f"the program defines no function {function}()"
    return None
