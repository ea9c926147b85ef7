"""Prompts of coder-agent and how code is read back out of a model's answer."""

from __future__ import annotations

import ast
import re

from shared.contracts import FileIn

SYSTEM = (
    "You are an expert Python programmer. Answer with exactly one ```python code block that "
    "contains the complete solution (imports and all functions). Do not include tests, examples "
    "or explanations outside the code block."
)
TESTS_SYSTEM = (
    "You write unit tests as plain Python assert statements. Answer with exactly one ```python code "
    "block holding 4 to 8 assert statements, one per line, each of the form "
    "`assert function(arguments) == expected`. Together they cover every rule and special case the "
    "task states (each branch, boundaries, empty input), each on the smallest input that shows it, "
    "with an expected value you have worked out step by step. Call only the functions the task "
    "names, by those names; do not define them; no prints, no loops."
)

_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The longest fenced code block of an answer (or the whole answer when unfenced)."""
    blocks = [b.strip("\n") for b in _BLOCK.findall(text)]
    blocks = [b for b in blocks if b.strip()]
    if blocks:
        return max(blocks, key=len).rstrip() + "\n"
    return text.strip() + "\n"


def task_prompt(text: str, files: list[FileIn], context: str) -> str:
    parts = [text.strip()]
    if context:
        parts.append(f"Relevant context:\n{context.strip()}")
    for f in files:
        parts.append(f"File `{f.path}` (return its complete new content):\n```python\n{f.content}\n```")
    return "\n\n".join(parts)


def tests_prompt(task: str, defines: str = "") -> str:
    """Tests are written from the task (and, when known, the solution's signatures) only,
    never from a candidate's body, so they do not copy its mistakes."""
    known = f"\n\nThe solution defines:\n```python\n{defines}\n```" if defines.strip() else ""
    return f"Task:\n{task.strip()}{known}\n\nWrite the assert statements."


def signatures(code: str) -> str:
    """``def name(args):`` / ``class Name:`` lines of the top-level definitions."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(f"def {node.name}({ast.unparse(node.args)}): ...")
        elif isinstance(node, ast.ClassDef):
            out.append(f"class {node.name}: ...")
    return "\n".join(out) or code


_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
         ast.AnnAssign, ast.AugAssign, ast.Try)


def strip_scaffolding(code: str) -> str:
    """The solution without the top-level demo/test code small models append to it (calls,
    prints, asserts, ``if __name__ == "__main__":`` blocks), which would run — and often
    fail — before the real checks. Unparseable code is returned unchanged."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines(keepends=True)
    drop: list[tuple[int, int]] = []
    for i, node in enumerate(tree.body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_main = isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
        keep = isinstance(node, _KEEP) or docstring or (isinstance(node, ast.If) and not is_main)
        if not keep and node.end_lineno is not None:
            drop.append((node.lineno, node.end_lineno))
    kept = [ln for n, ln in enumerate(lines, 1) if not any(a <= n <= b for a, b in drop)]
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith("#")):
        kept.pop()  # the "# Test the function" comment left behind
    return "".join(kept).rstrip() + "\n"


def repair_prompt(traceback: str) -> str:
    """A repair is asked only for a traceback (syntax error, exception, timeout)."""
    return (
        "Running the code failed with this error:\n"
        f"```\n{traceback.strip()[-2500:]}\n```\n"
        "Fix the code. Answer with the complete corrected code in one ```python block, "
        "without the error text or tests."
    )
