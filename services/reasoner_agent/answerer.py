"""reasoner-agent's logic: retrieve, answer from the sources, cite what was used."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from services.reasoner_agent.prompts import (
    NOTHING_RELEVANT,
    RAG_SYSTEM,
    SYSTEM,
    label,
    plain_prompt,
    rag_prompt,
)
from services.reasoner_agent.settings import ReasonerSettings
from shared.contracts import (
    AgentJob,
    Citation,
    ErrorInfo,
    SearchHit,
    SearchReply,
    SearchRequest,
    StepResult,
    Usage,
)
from shared.errors import Cancelled, DeadlineExceeded, SyndicateError
from shared.llm.base import GenerationRequest, TextEngine, TokenCallback

Search = Callable[[SearchRequest], Awaitable[SearchReply]]
_CITE = re.compile(r"\[([^\[\]\s]+):(\d+)-(\d+)\]")


def cited(answer: str, hits: list[SearchHit]) -> list[Citation]:
    """Citations the answer actually makes that name a retrieved source (invented ones dropped)."""
    known = {label(h): h for h in hits}
    out: list[Citation] = []
    for m in _CITE.finditer(answer):
        hit = known.get(m.group(0))
        if hit is not None and all(c.path != hit.path or c.start_line != hit.start_line for c in out):
            out.append(Citation(path=hit.path, start_line=hit.start_line, end_line=hit.end_line, score=hit.score))
    return out


_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(["the", "a", "an", "of", "to", "in", "is", "are", "be", "it", "its", "and", "or", "for", "on", "by", "as", "at", "with", "that", "this", "when", "from"])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def attribute(answer: str, hits: list[SearchHit], min_overlap: float = 0.35) -> tuple[str, list[Citation]]:
    """Cite for the model: each answer sentence gets the label of the passage that holds
    most of its content words (if at least ``min_overlap`` of them). Small models answer
    from the sources but rarely write the labels themselves."""
    passages = [(h, _words(h.text)) for h in hits]
    out: list[str] = []
    used: list[SearchHit] = []
    for sentence in _SENTENCE.split(answer.strip()):
        words = _words(sentence)
        best, score = None, 0.0
        for hit, pw in passages:
            overlap = len(words & pw) / len(words) if words else 0.0
            if overlap > score:
                best, score = hit, overlap
        if best is not None and score >= min_overlap and not _CITE.search(sentence):
            sentence = f"{sentence} {label(best)}"
            if best not in used:
                used.append(best)
        out.append(sentence)
    cites = [Citation(path=h.path, start_line=h.start_line, end_line=h.end_line, score=h.score) for h in used]
    return " ".join(out), cites


class Answerer:
    def __init__(self, engine: TextEngine, search: Search, settings: ReasonerSettings, on_token: TokenCallback | None = None,
                 progress: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.engine, self.search, self.settings = engine, search, settings
        self.on_token, self.progress = on_token, progress

    async def _say(self, text: str) -> None:
        if self.progress is not None:
            await self.progress(text)

    async def answer(self, job: AgentJob) -> StepResult:
        try:
            return await self._answer(job)
        except Cancelled as exc:
            return self._fail(job, "cancelled", exc)
        except DeadlineExceeded as exc:
            return self._fail(job, "timeout", exc)
        except SyndicateError as exc:
            return self._fail(job, "failed", exc)

    async def _answer(self, job: AgentJob) -> StepResult:
        hits: list[SearchHit] = []
        if job.collection:
            await self._say(f"searching collection '{job.collection}'")
            reply = await self.search(SearchRequest(query=job.text, collection=job.collection, top_k=self.settings.top_k))
            hits = [h for h in reply.hits if h.score >= self.settings.min_score]
            if not hits:
                text = NOTHING_RELEVANT.format(collection=job.collection)
                if self.on_token:
                    await self.on_token(text)
                return StepResult(task_id=job.task_id, step_id=job.step_id, agent="reasoner", status="done", answer=text)
            await self._say(f"answering from {len(hits)} sources")
            messages = [{"role": "system", "content": RAG_SYSTEM}, {"role": "user", "content": rag_prompt(job.text, hits, job.context)}]
        else:
            await self._say("answering")
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": plain_prompt(job.text, job.context)}]
        out = await self.engine.generate(
            GenerationRequest(messages=messages, max_tokens=job.max_tokens or self.settings.max_tokens,
                              deadline=job.deadline, request_id=job.task_id),
            self.on_token,
        )
        answer, citations = out.text.strip(), cited(out.text, hits)
        if hits and not citations:
            answer, citations = attribute(answer, hits)
        return StepResult(
            task_id=job.task_id, step_id=job.step_id, agent="reasoner", status="done", answer=answer,
            citations=citations,
            usage=Usage(model=out.model, input_tokens=out.input_tokens, output_tokens=out.output_tokens,
                        seconds=out.seconds, ttft_s=out.ttft_s),
        )

    @staticmethod
    def _fail(job: AgentJob, status: str, exc: SyndicateError) -> StepResult:
        return StepResult(task_id=job.task_id, step_id=job.step_id, agent="reasoner", status=status,  # type: ignore[arg-type]
                          error=ErrorInfo(code=exc.code, message=exc.message))
