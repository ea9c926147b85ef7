"""Prompts of reasoner-agent: reason to a final answer that chains can be voted on, or
answer from numbered sources and cite them as [path:start-end]."""

from __future__ import annotations

from shared.contracts import SearchHit

SYSTEM = "You are a careful assistant. Answer the question directly and concisely."
# The same instruction the evaluator gives a bare model on GSM8K, so a benchmark compares
# one chain with many under one prompt: the gain measured is the vote's.
NUMBER_SYSTEM = ("Solve the problem step by step, briefly. End your reply with a line "
                 "'The answer is N.' where N is a number.")
CHOICE_SYSTEM = ("Think the question through step by step, briefly. End your reply with a line "
                 "'The answer is X.' where X is the letter of the correct option.")
RAG_SYSTEM = (
    "You answer questions using only the sources given. After each claim, cite the source it "
    "comes from exactly as written in its label, like [notes/amm.md:3-10]. If the sources do not "
    "contain the answer, say that the collection has nothing relevant."
)
NOTHING_RELEVANT = "The collection '{collection}' has nothing relevant to this question, so I will not guess."


def label(hit: SearchHit) -> str:
    return f"[{hit.path}:{hit.start_line}-{hit.end_line}]"


def rag_prompt(question: str, hits: list[SearchHit], context: str = "") -> str:
    sources = "\n\n".join(f"Source {label(h)}:\n{h.text.strip()}" for h in hits)
    extra = f"\n\nEarlier step's result:\n{context.strip()}" if context else ""
    return f"{sources}{extra}\n\nQuestion: {question.strip()}\nAnswer with citations:"


def plain_prompt(question: str, context: str = "") -> str:
    return f"{context.strip()}\n\nQuestion: {question.strip()}" if context else question.strip()
