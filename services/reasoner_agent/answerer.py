"""reasoner-agent's logic: vote over reasoning chains when the answer is checkable,
answer from retrieved sources with checked citations when the task names a collection,
and say so plainly when nothing retrieved is relevant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.reasoner_agent.chains import run_chains
from services.reasoner_agent.citations import cited, ground, refuses
from services.reasoner_agent.prompts import (
    CHOICE_SYSTEM,
    NOTHING_RELEVANT,
    NUMBER_SYSTEM,
    RAG_RETRY,
    RAG_SYSTEM,
    SYSTEM,
    earlier_turns,
    labelled,
    plain_prompt,
    rag_prompt,
)
from services.reasoner_agent.settings import ReasonerSettings
from services.reasoner_agent.voting import Kind, options, question_kind
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

__all__ = ["Answerer", "Search", "cited"]


class Answerer:
    def __init__(self, engine: TextEngine, search: Search, settings: ReasonerSettings, on_token: TokenCallback | None = None,
                 progress: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.engine, self.search, self.settings = engine, search, settings
        self.on_token, self.progress = on_token, progress

    async def _say(self, text: str) -> None:
        if self.progress is not None:
            await self.progress(text)

    async def answer(self, job: AgentJob) -> StepResult:
        """The job's StepResult; a cancel, a deadline or an engine error ends it with that status."""
        try:
            if job.collection:
                return await self._from_collection(job)
            kind = question_kind(job.text)
            if kind is not None and self.settings.vote_chains > 1:
                return await self._voted(job, kind)
            await self._say("answering")
            return await self._once(job, [{"role": "system", "content": SYSTEM}, *earlier_turns(job.thread),
                                          {"role": "user", "content": plain_prompt(job.text, job.context)}])
        except Cancelled as exc:
            return self._fail(job, "cancelled", exc)
        except DeadlineExceeded as exc:
            return self._fail(job, "timeout", exc)
        except SyndicateError as exc:
            return self._fail(job, "failed", exc)

    def _request(self, job: AgentJob, messages: list[dict[str, str]], suffix: str = "") -> GenerationRequest:
        return GenerationRequest(messages=messages, max_tokens=job.max_tokens or self.settings.max_tokens,
                                 deadline=job.deadline, request_id=job.task_id + suffix)

    async def _once(self, job: AgentJob, messages: list[dict[str, str]]) -> StepResult:
        out = await self.engine.generate(self._request(job, messages), self.on_token)
        return self._done(job, out.text.strip(), Usage(model=out.model, input_tokens=out.input_tokens,
                                                        output_tokens=out.output_tokens, seconds=out.seconds,
                                                        ttft_s=out.ttft_s))

    async def _voted(self, job: AgentJob, kind: Kind) -> StepResult:
        """Self-consistency: chains in parallel slots, the majority's answer and its reasoning."""
        n = self.settings.vote_chains
        await self._say(f"reasoning along {n} chains in parallel, then voting")
        system = NUMBER_SYSTEM if kind == "number" else CHOICE_SYSTEM
        messages = [{"role": "system", "content": system}, *earlier_turns(job.thread),
                    {"role": "user", "content": plain_prompt(job.text, job.context)}]
        out = await run_chains(self.engine, self._request(job, messages), n=n, kind=kind,
                               letters=options(job.text) or "ABCDEFGHIJ", temperature=self.settings.vote_temperature,
                               seed=self.settings.vote_seed, early_stop=self.settings.vote_early_stop,
                               progress=self.progress)
        await self._say(out.vote.sentence)
        answer = f"{out.text}\n\n{out.vote.sentence}"
        if self.on_token is not None:  # chains are not streamed (they run together): send the result once
            await self.on_token(answer)
        return self._done(job, answer, Usage(model=out.model, input_tokens=out.input_tokens,
                                             output_tokens=out.output_tokens, seconds=out.seconds))

    async def _from_collection(self, job: AgentJob) -> StepResult:
        assert job.collection is not None
        await self._say(f"searching collection '{job.collection}'")
        reply = await self.search(SearchRequest(query=job.text, collection=job.collection, top_k=self.settings.top_k))
        hits = [h for h in reply.hits if h.score >= self.settings.min_score][: self.settings.max_sources]
        if not hits:
            return await self._nothing(job)
        await self._say(f"answering from {len(hits)} sources")
        messages = [{"role": "system", "content": RAG_SYSTEM}, *earlier_turns(job.thread),
                    {"role": "user", "content": rag_prompt(job.text, hits, job.context)}]
        out = await self.engine.generate(self._request(job, messages), self.on_token)
        usage = Usage(model=out.model, input_tokens=out.input_tokens, output_tokens=out.output_tokens,
                      seconds=out.seconds, ttft_s=out.ttft_s)
        answer, citations = ("", []) if refuses(out.text) else self._ground(labelled(out.text, hits), hits)
        if not citations and max(h.score for h in hits) >= self.settings.sure_score:
            # A passage this close to the question holds something: a refusal (or an answer
            # none of them supports) over it is asked once more, told the answer is there.
            await self._say("the sources are close to the question: asking again")
            again = [*messages, {"role": "assistant", "content": out.text}, {"role": "user", "content": RAG_RETRY}]
            retry = await self.engine.generate(self._request(job, again, suffix=".r"))
            usage.input_tokens += retry.input_tokens
            usage.output_tokens += retry.output_tokens
            usage.seconds += retry.seconds
            if not refuses(retry.text):
                answer, citations = self._ground(labelled(retry.text, hits), hits)
            if citations and self.on_token is not None:
                await self.on_token("\n\n" + answer)
        if not citations:  # an answer no retrieved passage supports is not an answer from the collection
            return await self._nothing(job, usage, streamed=True)
        return self._done(job, answer, usage, citations)

    def _ground(self, text: str, hits: list[SearchHit]) -> tuple[str, list[Citation]]:
        return ground(text, hits, support=self.settings.cite_support, attribute=self.settings.cite_attribute)

    async def _nothing(self, job: AgentJob, usage: Usage | None = None, streamed: bool = False) -> StepResult:
        text = NOTHING_RELEVANT.format(collection=job.collection)
        if self.on_token is not None:
            await self.on_token(("\n\n" if streamed else "") + text)
        return self._done(job, text, usage or Usage())

    @staticmethod
    def _done(job: AgentJob, answer: str, usage: Usage, citations: list[Citation] | None = None) -> StepResult:
        return StepResult(task_id=job.task_id, step_id=job.step_id, agent="reasoner", status="done",
                          answer=answer, citations=citations or [], usage=usage)

    @staticmethod
    def _fail(job: AgentJob, status: str, exc: SyndicateError) -> StepResult:
        return StepResult(task_id=job.task_id, step_id=job.step_id, agent="reasoner", status=status,  # type: ignore[arg-type]
                          error=ErrorInfo(code=exc.code, message=exc.message))
