"""How items become prompts (chat or plain completion), and answers become programs/numbers."""

from __future__ import annotations

import re

from shared.evaluation.suites import ChoiceItem, CodeItem, QAItem

# HumanEval's stop sequences for plain completion: the function body ends at the next
# top-level statement.
CODE_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]

CODE_SYSTEM = "You are an expert Python programmer. Reply with code only, in one ```python block."


def code_messages(item: CodeItem) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": CODE_SYSTEM},
        {"role": "user", "content": f"Complete this Python function. Return the whole function, with its imports.\n\n"
                                    f"```python\n{item.prompt}```"},
    ]


def code_task_text(item: CodeItem) -> str:
    """The task a user would give the syndicate for one HumanEval problem (no hidden tests)."""
    return (f"Complete this Python function `{item.entry_point}` so that it does what its docstring says. "
            f"Return the whole function with its imports.\n\n```python\n{item.prompt}```")


_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_code(text: str) -> str:
    """The first fenced code block that is not empty, else the text itself."""
    for block in _FENCE.findall(text):
        if block.strip():
            return block
    return text


def build_program(item: CodeItem, answer: str) -> str:
    """prompt + completion: a whole function replaces the prompt's stub; a body continues it.

    The prompt (imports, helpers, signature, docstring) stays first: a function whose body is
    only its docstring is valid Python, and a redefinition below it wins.
    """
    code = extract_code(answer)
    if re.search(rf"^\s*(async\s+)?def\s+{re.escape(item.entry_point)}\s*\(", code, flags=re.M):
        return f"{item.prompt}\n    pass\n\n{code.rstrip()}\n"
    return item.prompt + code


def test_code(item: CodeItem) -> str:
    """What runs after the program: the suite's test and ``check(entry_point)``."""
    return f"\n\n{item.test}\n\ncheck({item.entry_point})\n"


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
