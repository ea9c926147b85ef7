"""Prompts of coder-agent and how code is read back out of a model's answer."""

from __future__ import annotations

import re

from shared.contracts import FileIn

SYSTEM = (
    "You are an expert Python programmer. Answer with exactly one ```python code block that "
    "contains the complete solution (imports and all functions). Do not include tests, examples "
    "or explanations outside the code block."
)
TESTS_SYSTEM = (
    "You write unit tests as plain Python assert statements. Answer with exactly one ```python code "
    "block holding 3 to 6 assert statements, one per line, that check the behaviour the task asks "
    "for on small inputs whose correct answers are certain. Call only the functions the solution "
    "defines; do not redefine them; no prints, no loops."
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


def tests_prompt(task: str, code: str) -> str:
    return f"Task:\n{task.strip()}\n\nSolution:\n```python\n{code}```\n\nWrite the assert statements."


def repair_prompt(verdict: str) -> str:
    return (
        "Running the code with its tests failed:\n"
        f"```\n{verdict.strip()[-2500:]}\n```\n"
        "Fix the code. Answer with the complete corrected code in one ```python block."
    )


def provided_tests(text: str, files: list[FileIn]) -> str:
    """Tests the task brings itself: test files, or assert lines in its text."""
    tests = [f.content for f in files if f.path.rsplit("/", 1)[-1].startswith("test_")]
    asserts = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("assert ")]
    if asserts:
        tests.append("\n".join(asserts))
    return "\n\n".join(tests)
