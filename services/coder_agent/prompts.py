"""Prompts of coder-agent and how code is read back out of a model's answer."""

from __future__ import annotations

import ast
import re

from shared.contracts import FileIn

# One system prompt for code and tests, the task first in the user message and the request
# after it: a candidate's and the test writer's prompts then share every token up to the
# request, so an engine with a prefix cache evaluates the task once for both.
SYSTEM = "You are an expert Python programmer."
CODE_REQUEST = (
    "Answer with exactly one ```python code block that contains the complete solution (imports and all "
    "functions). Do not include tests, examples or explanations outside the code block."
)
# A code block ends at its closing fence: what a small model adds after it is explanation
# nobody reads (the test writer's block likewise).
STOP = ["```\n\n"]
TESTS_MARK = "Do not write the solution."
_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The longest fenced code block of an answer (or the whole answer when unfenced)."""
    blocks = [b.strip("\n") for b in _BLOCK.findall(text)]
    blocks = [b for b in blocks if b.strip()]
    if blocks:
        return max(blocks, key=len).rstrip() + "\n"
    return text.strip() + "\n"


def task_prompt(text: str, files: list[FileIn], context: str) -> str:
    """The task as both prompts start: its text, context, and the files it gives."""
    parts = [text.strip()]
    if context:
        parts.append(f"Relevant context:\n{context.strip()}")
    for f in files:
        parts.append(f"File `{f.path}` (return its complete new content):\n```python\n{f.content}\n```")
    return "\n\n".join(parts)


def code_messages(task: str) -> list[dict[str, str]]:
    """A candidate's conversation (``task`` from task_prompt)."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{task}\n\n{CODE_REQUEST}"}]


def tests_request(names: list[str], defines: str = "") -> str:
    """What the test writer is asked after the task: one assert per rule the task states,
    under a comment quoting the task's words it checks (model_tests.py reads the quote),
    from the task and the solution's signatures only, never from a candidate's body (so the
    tests do not copy a candidate's mistakes)."""
    call = ", ".join(f"`{n}`" for n in names) if names else "the task's functions"
    known = f"\nThe solution defines:\n```python\n{defines.strip()}\n```" if defines.strip() else ""
    # Short: every prompt token costs about as much as a generated one on a CPU. The example
    # is said to be another task's (shown bare, the 1.5B copied it as the tests of is_prime),
    # with two rules (with one, it wrote fizzbuzz(1), fizzbuzz(2), ... and never 15).
    return (
        f"{TESTS_MARK} Write 3 to 6 tests instead, in one ```python block: one `assert call == expected` line "
        "per rule or special case the task states, on the smallest input that shows it, each under a comment "
        "quoting the task's words it checks. For another task (\"returns the largest number; None for an empty "
        "list\") the tests would be:\n```python\n# returns the largest number\nassert largest([3, 9, 2]) == 9\n"
        "# None for an empty list\nassert largest([]) == None\n```\n"
        f"Now the tests of {call}, one rule each: call only {call}; do not define it.{known}"
    )


def enough_tests(text: str, n: int) -> bool:
    """The test block so far holds ``n`` complete assert lines (the 1.5B, asked for 3 to 6,
    goes on to is_prime(32) until its token cap; more asserts of one rule add no evidence)."""
    return n > 0 and sum(1 for line in text.splitlines(keepends=True)
                         if line.lstrip().startswith("assert ") and line.endswith("\n")) >= n


def tests_messages(task: str, names: list[str], defines: str = "") -> list[dict[str, str]]:
    """The test writer's conversation: the candidates' prefix, then the tests request."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{task}\n\n{tests_request(names, defines)}"}]


def is_tests_request(messages: list[dict[str, str]]) -> bool:
    return TESTS_MARK in messages[-1]["content"]


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
