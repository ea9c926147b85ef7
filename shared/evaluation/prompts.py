"""How items become prompts (chat or plain completion); answers become programs in
shared/evaluation/programs.py."""

from __future__ import annotations

import re

from shared.evaluation.items import ChoiceItem, CodeItem, QAItem
from shared.evaluation.programs import prompt_shape

# HumanEval's stop sequences for plain completion: the function body ends at the next
# top-level statement.
CODE_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]

CODE_SYSTEM = "You are an expert Python programmer. Reply with code only, in one ```python block."


def _code_request(item: CodeItem) -> str:
    """What the model is asked for each prompt shape (shared/evaluation/programs.py)."""
    shape = prompt_shape(item)
    if shape == "stub":
        return ("Complete this Python function. Return the whole function, with its imports.\n\n"
                f"```python\n{item.prompt}```")
    name = f" Name the function `{item.entry_point}`." if item.entry_point else ""
    if shape == "module":
        return (f"Write Python code for the task below.{name} Return the whole code, with its imports.\n\n"
                f"```python\n{item.prompt}```")
    return f"{item.prompt.strip()}\n\nWrite it in Python.{name} Return the whole code, with its imports."


def code_messages(item: CodeItem) -> list[dict[str, str]]:
    return [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": _code_request(item)}]


def code_task_text(item: CodeItem) -> str:
    """The task a user would give the syndicate for one code item (no hidden tests)."""
    if prompt_shape(item) == "stub":
        return (f"Complete this Python function `{item.entry_point}` so that it does what its docstring says. "
                f"Return the whole function with its imports.\n\n```python\n{item.prompt}```")
    return _code_request(item)


QA_SYSTEM = ("Solve the problem step by step, briefly. End your reply with a line "
             "'The answer is N.' where N is a number.")


def qa_messages(item: QAItem) -> list[dict[str, str]]:
    return [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": item.question}]


def qa_prompt(item: QAItem) -> str:
    """Plain-completion form for base models (no chat template)."""
    return f"Question: {item.question}\nAnswer: Let's think step by step."


QA_STOPS = ["\n\nQuestion:", "\nQuestion:"]


def qa_task_text(item: QAItem) -> str:
    return f"{item.question}\n\nGive the final answer as a number on the last line: 'The answer is N.'"


def choice_context(item: ChoiceItem) -> str:
    """Context for scoring each choice as a continuation (lm-eval-harness 'rc' style)."""
    return f"Question: {item.question}\nAnswer:"


LETTERS = "ABCDEFGHIJ"


def choice_task_text(item: ChoiceItem) -> str:
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return f"{item.question}\n\n{opts}\n\nAnswer with the letter of the correct option only."


def parse_letter(text: str, n_choices: int) -> int | None:
    """The chosen option from a free-text answer ('B', 'B.', 'The answer is (B)')."""
    allowed = LETTERS[:n_choices]
    m = re.search(rf"answer\s*(?:is)?\s*:?\s*\(?([{allowed}])\b", text, flags=re.I)
    if m:
        return allowed.index(m.group(1).upper())
    m = re.search(rf"\b([{allowed}])\b", text)
    return allowed.index(m.group(1)) if m else None
