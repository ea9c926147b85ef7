"""What the two ways of writing a candidate share — a coder-agent's ``mutate`` job and a
model request to a named model (``[[models]] name = ...`` in a spec): the system prompt and
how the program is read out of the model's answer."""

from __future__ import annotations

import re
import zlib

MUTATE_SYSTEM = (
    "You are an expert Python programmer who improves programs. You are shown a task and "
    "earlier versions of a program or function with the score each earned (higher is "
    "better). Write the improved version you are asked for. Answer with exactly one "
    "```python code block holding it complete: every import and helper it needs, with the "
    "same signatures. No tests, no examples, no prints, no explanations outside the code block."
)
_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[^\n]*\n(.*?)(?:```|$)", re.S)


def code_block(text: str) -> str:
    """The longest fenced code block of an answer (or the whole answer when unfenced)."""
    blocks = [b.strip("\n") for b in _BLOCK.findall(text) if b.strip()]
    return (max(blocks, key=len) if blocks else text.strip()).rstrip() + "\n"


def sample_seed(step_id: str) -> int:
    """A stable per-candidate sampling seed: candidates of one prompt differ, and asking a
    candidate again writes the same program."""
    return zlib.crc32(step_id.encode())
