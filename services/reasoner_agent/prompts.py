"""Prompts of reasoner-agent: reason to a final answer that chains can be voted on, or
answer from numbered sources and cite them as [path:start-end]."""

from __future__ import annotations

import re

from shared.contracts import SearchHit, ThreadTurn

_SOURCE_REF = re.compile(r"\[(?:source\s*)?\d+(?:\s*[,;]\s*\d+)*\]", re.I)

SYSTEM = "You are a careful assistant. Answer the question directly and concisely."
# The same instruction the evaluator gives a bare model on GSM8K, so a benchmark compares
# one chain with many under one prompt: the gain measured is the vote's.
NOT_IN_SOURCES = "NOT IN SOURCES"
NUMBER_SYSTEM = ("Solve the problem step by step, briefly. End your reply with a line "
                 "'The answer is N.' where N is a number.")
CHOICE_SYSTEM = ("Think the question through step by step, briefly. End your reply with a line "
                 "'The answer is X.' where X is the letter of the correct option.")
# Small models asked to cite write little but citations ("[1] [2]"); asked only to answer
# from the sources, they answer well. So the prompt asks for the answer, the sources are
# numbered (a model that does cite writes [n], turned into [path:start-end] afterwards), and
# citations.ground() attributes every sentence to the passage that holds it.
# Every fact the sources give that answers the question: "it becomes liquidatable" alone
# leaves out who repays what, at what discount, and how much at once.
RAG_SYSTEM = ("Answer the question using only the facts in the sources, in two to four sentences: state every "
              "fact they give that answers it (what happens, who does what, numbers, conditions, names of "
              "functions or files).")
RAG_RETRY = ("The sources above do hold what answers the question (for code: the function or file to use). "
             "Answer it from them.")
NOTHING_RELEVANT = "The collection '{collection}' has nothing relevant to this question, so I will not guess."


def label(hit: SearchHit) -> str:
    return f"[{hit.path}:{hit.start_line}-{hit.end_line}]"


def rag_prompt(question: str, hits: list[SearchHit], context: str = "") -> str:
    sources = "\n\n".join(f"Source {i} ({h.path}, lines {h.start_line}-{h.end_line}):\n{h.text.strip()}"
                          for i, h in enumerate(hits, 1))
    extra = f"\n\nEarlier step's result:\n{context.strip()}" if context else ""
    return f"{sources}{extra}\n\nQuestion: {question.strip()}"


def labelled(answer: str, hits: list[SearchHit]) -> str:
    """The model's [n] source numbers (also "[1, 2]", "[1][2]") as [path:start-end] labels;
    a number that names no source is dropped."""

    def one(m: re.Match[str]) -> str:
        nums = [int(n) for n in re.findall(r"\d+", m.group(0))]
        return " ".join(label(hits[n - 1]) for n in nums if 1 <= n <= len(hits))

    return _SOURCE_REF.sub(one, answer)


def plain_prompt(question: str, context: str = "") -> str:
    return f"{context.strip()}\n\nQuestion: {question.strip()}" if context else question.strip()


def earlier_turns(thread: list[ThreadTurn]) -> list[dict[str, str]]:
    """A thread's earlier exchange as chat turns, before the new question."""
    out: list[dict[str, str]] = []
    for turn in thread:
        out.append({"role": "user", "content": turn.text})
        out.append({"role": "assistant", "content": turn.answer or f"(no answer: that task ended {turn.status})"})
    return out
