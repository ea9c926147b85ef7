"""Grounding an answer in the passages it was written from.

Every ``[path:start-end]`` label in the answer is checked: a label that names no retrieved
passage is removed, and so is one whose passage does not hold enough of the sentence's
content words (a small model often cites the first source for everything). A sentence
left without a label gets the passage that holds most of its words, when one holds
enough. The citations returned are exactly the labels left in the text.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from services.reasoner_agent.prompts import label
from shared.contracts import Citation, SearchHit

CITE = re.compile(r"\[([^\[\]\s]+):(\d+)-(\d+)\]")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    ["the", "a", "an", "of", "to", "in", "is", "are", "be", "it", "its", "and", "or", "for", "on", "by", "as", "at", "with", "that", "this", "when", "from", "which", "what", "who", "how", "why", "does", "do", "can", "will", "would", "not", "no", "yes", "was", "were", "has", "have", "had", "than", "then", "there", "their", "they", "them", "so", "if", "but", "also", "into", "about", "more", "most", "each", "any", "all", "one", "two", "source", "sources", "according", "answer", "question"]
)
_NEAR_TIE = 0.1
# The model saying the sources do not answer the question (its own "nothing relevant").
_REFUSAL = re.compile(
    r"not in (?:the )?sources|nothing relevant|no relevant|(?:do|does|did)(?: not|n't) (?:contain|mention|provide|include|say|cover|address|discuss)"
    r"|not (?:mentioned|provided|covered|found|discussed|addressed|contained)|no information|cannot be (?:found|answered|determined)"
    r"|(?:can ?not|can't|unable to) (?:answer|find|determine)",
    re.I,
)


def words(text: str) -> set[str]:
    """Content words of a text: lower case, stop words and very short words dropped, but
    every number kept (a "2 %" is what tells two passages on the same subject apart)."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and (len(w) > 2 or w.isdigit())}


def overlap(sentence: set[str], passage: set[str], weight: dict[str, float] | None = None) -> float:
    """Share of the sentence's content words that the passage holds, each word weighted
    (default 1): rare words decide, words every passage shares barely count."""
    if not sentence:
        return 0.0
    w = weight or {}
    return sum(w.get(x, 1.0) for x in sentence & passage) / sum(w.get(x, 1.0) for x in sentence)


def rarity(passages: list[set[str]]) -> dict[str, float]:
    """Weight of each word: 1 / the number of retrieved passages that hold it."""
    counts: dict[str, int] = {}
    for p in passages:
        for x in p:
            counts[x] = counts.get(x, 0) + 1
    return {x: 1.0 / n for x, n in counts.items()}


def refuses(answer: str) -> bool:
    """True when the answer's first sentence says the sources hold nothing relevant."""
    first = _SENTENCE.split(answer.strip().split("\n", 1)[0], maxsplit=1)[0]
    return bool(_REFUSAL.search(first))


def _lines(answer: str) -> list[list[str]]:
    """The answer's lines, each as its sentences; a piece that is only labels joins the
    sentence before it (models often put the label after the full stop or on its own line)."""
    lines: list[list[str]] = []
    for raw in answer.strip().split("\n"):
        line: list[str] = []
        for piece in (p.strip() for p in _SENTENCE.split(raw)):
            if not piece:
                continue
            if not words(CITE.sub("", piece)) and (line or lines):
                target = line if line else next((ln for ln in reversed(lines) if ln), None)
                if target is not None:
                    target[-1] = f"{target[-1]} {piece}"
                    continue
            line.append(piece)
        lines.append(line)
    return lines


def ground(answer: str, hits: list[SearchHit], *, support: float = 0.25,
           attribute: float = 0.35) -> tuple[str, list[Citation]]:
    """The answer with only supported citations, and those citations in order of first use.

    A label the model wrote stays when its passage holds at least ``support`` of the
    sentence's content words; a sentence with none left gets the best passage when that
    holds at least ``attribute`` of them. Words are weighted by rarity among the passages. Line breaks (lists, paragraphs) are kept.
    """
    by_label = {label(h): h for h in hits}
    # A passage's file name is part of what it says: "use textwrap.wrap" is supported by the
    # `def wrap` chunk of textwrap.py, whose text never spells "textwrap".
    passage_words = {label(h): words(h.text) | words(PurePosixPath(h.path).stem) for h in hits}
    weight = rarity(list(passage_words.values()))
    used: list[SearchHit] = []

    def one(sentence: str) -> str:
        bare = re.sub(r"\s+([.,;:!?])", r"\1", CITE.sub("", sentence)).strip()
        content = words(bare)
        written = list(dict.fromkeys(m.group(0) for m in CITE.finditer(sentence)))
        kept = [lb for lb in written if lb in by_label and overlap(content, passage_words[lb], weight) >= support]
        if not kept and content and hits:
            # Near-ties go to the better-ranked passage: retrieval already judged it closer.
            scores = {lb: overlap(content, passage_words[lb], weight) for lb in by_label}
            top = max(scores.values())
            best = next(lb for lb in by_label if scores[lb] >= top - _NEAR_TIE)
            if scores[best] >= attribute:
                kept = [best]
        for lb in kept:
            if by_label[lb] not in used:
                used.append(by_label[lb])
        return f"{bare} {' '.join(kept)}" if kept else bare

    text = "\n".join(" ".join(s for s in map(one, line) if s) for line in _lines(answer))
    cites = [Citation(path=h.path, start_line=h.start_line, end_line=h.end_line, score=h.score) for h in used]
    return text.strip(), cites


def cited(answer: str, hits: list[SearchHit]) -> list[Citation]:
    """Citations the answer makes that name a retrieved passage (invented ones dropped)."""
    known = {label(h): h for h in hits}
    out: list[Citation] = []
    for m in CITE.finditer(answer):
        hit = known.get(m.group(0))
        if hit is not None and all(c.path != hit.path or c.start_line != hit.start_line for c in out):
            out.append(Citation(path=hit.path, start_line=hit.start_line, end_line=hit.end_line, score=hit.score))
    return out
