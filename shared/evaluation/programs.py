"""How a code item and a model's answer become one program, for every prompt shape users
bring. The shape is read from the prompt itself:

- ``stub``   the prompt defines ``entry_point`` (HumanEval: imports, signature, docstring).
             A whole function in the answer replaces the stub; a body continues it. The
             prompt stays first, so its imports and helpers remain.
- ``module`` the prompt is Python without that definition (MBPP / EvalPlus: a module
             docstring stating the task with one example assert). Its imports and helper
             definitions stay; anything it would execute (a stray example assert) is left
             out, so the answer's own code follows.
- ``text``   the prompt is prose (MBPP's ``text``, a plain task). The answer's code alone.

The test either defines ``check(candidate)`` (HumanEval), which is then called with the
entry point, or is plain asserts that call the function by name (MBPP's ``test_list``).

An item whose skeleton cannot be assembled (a stub that does not parse, a test that does
not parse, a ``check`` without an entry point) raises ``SuiteError`` naming the item: the
suite is broken, and scoring it would report a silent 0.
"""

from __future__ import annotations

import ast
import builtins
import re
from typing import Any, Literal

from shared.errors import SuiteError
from shared.evaluation.items import CodeItem

Shape = Literal["stub", "module", "text"]
# Top-level statements of a ``module`` prompt that are kept: they define, never execute.
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_code(text: str) -> str:
    """The first fenced code block that is not empty, else the text itself."""
    for block in _FENCE.findall(text):
        if block.strip():
            return block
    return text


def called_function(test: str) -> str | None:
    """The first function a test calls that is not a builtin (MBPP's asserts name it)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not hasattr(builtins, node.func.id):
            return node.func.id
    return None


def code_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A code record in any of the accepted shapes, as CodeItem fields.

    MBPP (``text``, ``test_list``, ``test_setup_code``) becomes the EvalPlus shape: a module
    docstring with the task and the first test as its example; every test stays hidden.
    A plain ``task`` (or ``text``) with a ``test`` becomes the prompt as it is.
    """
    rec = dict(rec)
    if "test_list" in rec and "prompt" not in rec:
        tests = [t for t in rec["test_list"] if str(t).strip()]
        text = str(rec.get("text", "")).strip()
        rec["prompt"] = f'"""\n{text}\n{tests[0] if tests else ""}\n"""\n'
        rec["test"] = "\n".join(filter(None, [str(rec.get("test_setup_code") or ""), *map(str, tests)]))
    elif "prompt" not in rec:
        rec["prompt"] = rec.get("task", rec.get("text", ""))
    if not rec.get("entry_point") and not re.search(r"^def check\s*\(", str(rec.get("test", "")), flags=re.M):
        rec["entry_point"] = called_function(str(rec.get("test", "")))
    return rec


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _defines(tree: ast.Module, name: str | None) -> bool:
    return name is not None and any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in tree.body)


def _stub_defined(prompt: str, entry_point: str | None) -> bool:
    """True when the prompt opens a ``def entry_point(`` (its body may be empty)."""
    return entry_point is not None and re.search(
        rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, flags=re.M) is not None


def prompt_shape(item: CodeItem) -> Shape:
    """Which of the three shapes the item's prompt has (module docstring)."""
    if _stub_defined(item.prompt, item.entry_point):
        return "stub"
    return "module" if _parse(item.prompt) is not None else "text"


def test_calls_check(item: CodeItem) -> bool:
    """True when the test defines ``check`` (HumanEval): it is then called with the entry point."""
    tree = _parse(item.test)
    return tree is not None and _defines(tree, "check")


def check_item(item: CodeItem) -> Shape:
    """Refuse an item whose program cannot be assembled (``SuiteError`` naming it)."""
    shape = prompt_shape(item)
    if shape == "stub" and _parse(item.prompt + "\n    pass\n") is None:
        raise SuiteError(f"code item {item.id!r}: its prompt defines {item.entry_point}() but does not parse "
                         "as Python even with a body", detail={"item": item.id})
    if _parse(item.test) is None:
        raise SuiteError(f"code item {item.id!r}: its test is not valid Python", detail={"item": item.id})
    if test_calls_check(item) and not item.entry_point:
        raise SuiteError(f"code item {item.id!r}: its test defines check(candidate) but the item names no "
                         "entry_point to call it with", detail={"item": item.id})
    if not item.test.strip():
        raise SuiteError(f"code item {item.id!r}: it has no test, so no answer could pass or fail",
                         detail={"item": item.id})
    return shape


def _definitions(prompt: str) -> str:
    """A ``module`` prompt's imports and definitions, in order (its docstring and any
    example it would execute are left out)."""
    tree = _parse(prompt)
    if tree is None:
        return ""
    lines = prompt.splitlines()
    kept = []
    for node in tree.body:
        if isinstance(node, _KEPT):
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            kept.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n".join(kept)


def build_program(item: CodeItem, answer: str) -> str:
    """The program of ``item`` with ``answer`` (a reply with a fenced block, or plain code)."""
    code = extract_code(answer)
    shape = prompt_shape(item)
    if shape == "stub":
        if _stub_defined(code, item.entry_point):
            # The stub is kept (with a body, so it parses) and the answer's function redefines it.
            return f"{item.prompt.rstrip()}\n    pass\n\n{code.rstrip()}\n"
        return item.prompt + code
    prefix = _definitions(item.prompt) if shape == "module" else ""
    return f"{prefix}\n\n{code.rstrip()}\n" if prefix else f"{code.rstrip()}\n"


def test_code(item: CodeItem) -> str:
    """What runs after the program: the suite's test, and ``check(entry_point)`` when the
    test defines ``check``."""
    call = f"\n\ncheck({item.entry_point})\n" if test_calls_check(item) else "\n"
    return f"\n\n{item.test.rstrip()}\n{call}"
