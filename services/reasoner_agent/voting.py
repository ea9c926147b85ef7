"""Self-consistency's pure parts: which questions have a checkable final answer, how to
read that answer from a reasoning chain, and the majority vote over chains.

A question is *checkable* when its answer is a number (a word problem: digits and a
quantity question) or one letter of listed options. Only then can independent chains be
compared; free-form answers are never voted on.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

# the scorer's rule for numbers: a vote counts as equal what GSM8K scoring counts as equal
from shared.evaluation.metrics import normalize_number

Kind = Literal["number", "choice"]

_OPTION = re.compile(r"^\s*\(?([A-J])[).:]\s+\S", re.M)
# A quantity question: "how many/much/long ...", or a word that asks for an amount. A bare
# "what is" does not count ("What is new in Python 3.12?" is not a word problem).
_QUANTITY = re.compile(
    r"\bhow (?:many|much|long|old|fast|far|tall|big|often|heavy)\b|\bby how\b|\bwhat (?:percentage|fraction|number)\b"
    r"|\b(?:calculate|compute|total|sum|average|difference|remain(?:s|ing|der)?|left|combined|maximum|minimum|profit"
    r"|cost|price|earn|pay|spend|salary|distance|percent)\b",
    re.I,
)
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")
# "The answer is 18", also wrapped in LaTeX as small models write it: "is \\(\\boxed{18}\\)".
_ANSWER_NUMBER = re.compile(
    r"answer\s*(?:is|:)\s*[:\s]*(?:\\[(\[]|\$)?\s*(?:\\boxed\{)?\s*\**\s*\$?\s*(-?\$?[\d,]*\.?\d+)", re.I)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
# The letter itself is case-sensitive: "the answer is a ..." is an article, not option A.
_ANSWER_LETTER = re.compile(r"(?i:answer)\s*(?:is|:)?\s*:?\s*\**\s*\(?([A-J])\b\)?")
_TAIL_LETTER = re.compile(r"(?:^|[\s(])([A-J])[.)]?\**$")  # a reply that ends with the letter
_PAREN_LETTER = re.compile(r"\(([A-J])\)")


def question_kind(question: str) -> Kind | None:
    """'choice' for listed options (A. ... B. ...), 'number' for a quantity question with
    numbers in it, None for anything else (answered once, never voted on)."""
    letters = [m.group(1) for m in _OPTION.finditer(question)]
    if len(letters) >= 2 and letters[:2] == ["A", "B"]:
        return "choice"
    if _DIGIT.search(question) and _QUANTITY.search(question):
        return "number"
    return None


def options(question: str) -> str:
    """The option letters a choice question lists, in order ('ABCD')."""
    return "".join(dict.fromkeys(m.group(1) for m in _OPTION.finditer(question)))


def final_answer(text: str, kind: Kind, letters: str = "ABCDEFGHIJ") -> str | None:
    """The final answer a chain commits to: after 'the answer is' (the prompt asks for
    it), else the last number / the last lone option letter; None when there is none."""
    if kind == "number":
        m = _ANSWER_NUMBER.findall(text)
        if m:
            return normalize_number(m[-1])
        boxed = [n for b in _BOXED.findall(text) for n in _NUMBER.findall(b)]
        if boxed:
            return normalize_number(boxed[-1])
        nums = _NUMBER.findall(text)
        return normalize_number(nums[-1]) if nums else None
    found = [x for x in _ANSWER_LETTER.findall(text) if x in letters]
    if found:
        return found[-1]
    tail = _TAIL_LETTER.search(text.strip())
    if tail and tail.group(1) in letters:
        return tail.group(1)
    paren = [x for x in _PAREN_LETTER.findall(text) if x in letters]
    return paren[-1] if paren else None


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote: the winning answer, its votes, and the chains counted."""

    answer: str | None
    votes: int
    counted: int  # chains that committed to some answer
    chains: int  # chains that finished
    winner: int | None  # index of the chain whose text is returned

    @property
    def sentence(self) -> str:
        """One plain sentence for the user, ending with the answer (so a reader of the last
        number or 'answer is' finds the voted one)."""
        if self.answer is None:
            return f"None of the {self.chains} reasoning chains reached a final answer."
        return f"{self.votes} of {self.chains} reasoning chains agree on {self.answer}."


def tally(answers: list[str | None], prefer: int = 0) -> Vote:
    """Majority vote over chain answers (None abstains). A tie goes to the answer of chain
    ``prefer`` (the greedy one) when it is among the tied, else to the earliest chain's."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return Vote(None, 0, 0, len(answers), 0 if answers else None)
    best = max(counts.values())
    tied = [a for a in counts if counts[a] == best]
    if 0 <= prefer < len(answers) and answers[prefer] in tied:
        answer = answers[prefer]
        return Vote(answer, best, sum(counts.values()), len(answers), prefer)
    winner = next(i for i, a in enumerate(answers) if a in tied)
    return Vote(answers[winner], best, sum(counts.values()), len(answers), winner)


def decided(answers: list[str | None], remaining: int, greedy: str | None = None) -> bool:
    """True when the chains still running cannot change the vote's leader (early stop).
    ``greedy``: the finished greedy chain's answer — a tie goes to it, so a leader that is
    that answer is decided as soon as the others can at most tie it."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return False
    (leader, top), *rest = counts.most_common()
    second = rest[0][1] if rest else 0
    if top > second + remaining:
        return True
    return greedy is not None and top == counts[greedy] and top >= second + remaining
