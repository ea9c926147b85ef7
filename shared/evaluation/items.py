"""The items of an evaluation suite, one pydantic model per suite type (what a line of a
suite file must hold)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str


class CodeItem(Item):
    prompt: str  # a stub (HumanEval), a module docstring (MBPP/EvalPlus) or plain task text
    test: str  # defines check(candidate) (HumanEval) or asserts calling the function by name
    entry_point: str | None = None  # the function under test (needed when the test defines check)


class QAItem(Item):
    question: str
    answer: str


class ChoiceItem(Item):
    question: str
    choices: list[str] = Field(min_length=2)
    answer_index: int


class SpeedItem(Item):
    prompt: str
    max_tokens: int = 128


class TextItem(Item):
    """One text; the scorer cuts it into n_ctx chunks."""

    text: str
