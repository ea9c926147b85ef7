"""coder-agent's strategy: sample, then verify.

1. The task's own checks are collected (trusted.py). When they are few, the model also
   writes tests, from the task alone; tests that contradict each other or the task's
   checks are discarded before anything runs.
2. ``candidates`` programs are written at once in the engine's slots: the first greedy
   (the answer a single call would give), the rest sampled with seeds.
3. Each runs in code-sandbox against all checks; ranking.py picks the best (trusted checks
   first, then CodeT's dual agreement over the model's tests, dropping the tests most
   candidates fail).
4. While the best raises, times out or fails a trusted check, one more round (up to
   ``max_rounds``, ``max_candidates`` programs in all) repairs the best candidates that
   have a traceback — never from a wrong value — and adds fresh samples when a trusted
   check failed on its value. It stops as soon as the best is clean.
5. The answer is the best candidate seen, with one sentence on what it passed.
"""

from __future__ import annotations

import ast
import asyncio
import zlib
from collections.abc import Awaitable, Callable

from services.coder_agent.candidates import Ask, CandidateWriter
from services.coder_agent.checks import (
    consistent_checks,
    describe_failures,
    harness,
    model_checks,
    read_outcomes,
    strip_report,
)
from services.coder_agent.probes import probe_calls
from services.coder_agent.prompts import (
    SYSTEM,
    TESTS_SYSTEM,
    extract_code,
    repair_prompt,
    signatures,
    strip_scaffolding,
    task_prompt,
    tests_prompt,
)
from services.coder_agent.ranking import Candidate, Ranking, rank, summary_sentence
from services.coder_agent.report import (
    answer_text,
    attempt_record,
    edited_files,
    summarize,
    verdict_text,
)
from services.coder_agent.settings import CoderSettings
from services.coder_agent.trusted import is_test_file, task_function_names, trusted_checks
from shared.contracts import (
    AgentJob,
    Citation,
    ErrorInfo,
    ExecLimits,
    ExecRequest,
    ExecResult,
    SearchReply,
    SearchRequest,
    StepResult,
    Usage,
)
from shared.errors import Cancelled, DeadlineExceeded, SyndicateError
from shared.llm.base import TextEngine, TokenCallback

RunCode = Callable[[ExecRequest], Awaitable[ExecResult]]
Search = Callable[[SearchRequest], Awaitable[SearchReply]]
Progress = Callable[[str], Awaitable[None]]


class CodeSolver:
    def __init__(
        self, engine: TextEngine, run_code: RunCode, settings: CoderSettings,
        on_token: TokenCallback | None = None, progress: Progress | None = None, search: Search | None = None,
        is_cancelled: Callable[[str], bool] | None = None,
    ) -> None:
        self.engine, self.run_code, self.settings = engine, run_code, settings
        self.on_token, self.progress, self.search, self.is_cancelled = on_token, progress, search, is_cancelled
        self.citations: list[Citation] = []
        self.usage = Usage(model=engine.name)
        self.pool: list[Candidate] = []
        self.checks: list[str] = []
        self.prelude: list[str] = []
        self.probes: list[str] = []
        self.n_trusted = 0
        self.tests_asked = False
        self.discarded: list[str] = []

    async def _say(self, text: str) -> None:
        if self.progress is not None:
            await self.progress(text)

    async def solve(self, job: AgentJob) -> StepResult:
        try:
            return await self._solve(job)
        except Cancelled as exc:
            return await self._result(job, "cancelled", ErrorInfo(code=exc.code, message=exc.message))
        except DeadlineExceeded as exc:
            return await self._result(job, "timeout", ErrorInfo(code=exc.code, message=exc.message))
        except SyndicateError as exc:
            return await self._result(job, "failed", ErrorInfo(code=exc.code, message=exc.message))

    async def _retrieve(self, job: AgentJob) -> str:
        """Passages from the task's collection, labelled like the reasoner's citations."""
        if not job.collection or self.search is None:
            return ""
        await self._say(f"searching collection '{job.collection}'")
        reply = await self.search(SearchRequest(query=job.text[:2000], collection=job.collection, top_k=self.settings.top_k))
        hits = [h for h in reply.hits if h.score >= self.settings.min_score]
        self.citations = [Citation(path=h.path, start_line=h.start_line, end_line=h.end_line, score=h.score) for h in hits]
        return "\n\n".join(f"[{h.path}:{h.start_line}-{h.end_line}]\n{h.text.strip()}" for h in hits)

    async def _solve(self, job: AgentJob) -> StepResult:
        s = self.settings
        writer = CandidateWriter(self.engine, job, self.usage, s.max_tokens, self.on_token, self.is_cancelled)
        context = "\n\n".join(c for c in (job.context, await self._retrieve(job)) if c)
        base = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task_prompt(job.text, job.files, context)}]
        trusted = trusted_checks(job.text, job.files)
        self.prelude, self.n_trusted = trusted.prelude, len(trusted.checks)
        self.tests_asked = s.write_tests and len(trusted.checks) < s.tests_below_trusted
        seed = zlib.crc32(job.step_id.encode())
        n = max(1, min(s.candidates, s.max_candidates))
        asks = [Ask(base, 0.0, stream=True)] + [Ask(base, s.sample_temperature, seed=seed + k) for k in range(1, n)]
        defines = "\n".join(signatures(f.content) for f in job.files if not is_test_file(f))
        # Tests are written next to the candidates when the task says what to call.
        tests_now = self.tests_asked and bool(task_function_names(job.text) or defines)
        if tests_now:
            asks.append(self._tests_ask(job, defines))
        await self._say(f"writing {n} candidate{'s' * (n != 1)}" + (" and tests" if tests_now else "") + " in parallel")
        outs = await writer.run(asks)
        model_tests = outs[n].text if tests_now else ""
        new = [self._candidate(out.text, "greedy" if k == 0 else "sampled", out.output_tokens, out.seconds, base)
               for k, out in enumerate(outs[:n])]
        if self.tests_asked and not tests_now:
            await self._say("writing tests")
            parsed = [c.code for c in new if c.parse_error is None]
            model_tests = (await writer.run([self._tests_ask(job, signatures(parsed[0]) if parsed else "")]))[0].text
        model, self.discarded = consistent_checks(model_checks(extract_code(model_tests)) if model_tests else [],
                                                  trusted.checks)
        self.checks = trusted.checks + model
        self.probes = probe_calls(self.checks, task_function_names(job.text) or _defined(new))
        ranking = await self._evaluate(new)
        for round_no in range(2, s.max_rounds + 1):
            asks, origins = self._next_round(ranking, seed)
            if not asks:
                break
            await self._say(f"round {round_no}: {', '.join(origins)}")
            outs = await writer.run(asks)
            ranking = await self._evaluate([
                self._candidate(out.text, origin, out.output_tokens, out.seconds, ask.messages)
                for out, ask, origin in zip(outs, asks, origins, strict=True)])
        status = "done" if self._accepted(ranking) else "failed"
        error = None if status == "done" else ErrorInfo(
            code="tests_failed", message=summary_sentence(ranking, len(self.pool), self.tests_asked))
        return await self._result(job, status, error, ranking)

    def _tests_ask(self, job: AgentJob, defines: str) -> Ask:
        return Ask([{"role": "system", "content": TESTS_SYSTEM}, {"role": "user", "content": tests_prompt(job.text, defines)}],
                   0.0, max_tokens=self.settings.tests_max_tokens)

    def _candidate(self, answer: str, origin: str, tokens: int, seconds: float,
                   messages: list[dict[str, str]]) -> Candidate:
        code = strip_scaffolding(extract_code(answer))
        c = Candidate(index=len(self.pool) + 1, origin=origin, code=code, answer=answer, tokens=tokens,
                      seconds=round(seconds, 3), messages=messages)
        if not code.strip():
            c.parse_error = "the answer holds no code"
        else:
            try:
                ast.parse(code)
            except SyntaxError as exc:
                c.parse_error = f"SyntaxError: {exc.msg} (line {exc.lineno})\n{(exc.text or '').rstrip()}"
        self.pool.append(c)
        return c

    async def _evaluate(self, new: list[Candidate]) -> Ranking:
        """Run the new candidates (each distinct program once) and rank the whole pool."""
        seen = {c.code: c for c in self.pool if c.result is not None}
        todo = {c.code: c for c in new if c.parse_error is None and c.code not in seen}
        if todo:
            await self._say(f"running {len(todo)} program{'s' * (len(todo) != 1)} against {len(self.checks)} checks in code-sandbox")
        results = await asyncio.gather(*(self._run(c.code, self.checks, self.probes) for c in todo.values()))
        for c, r in zip(todo.values(), results, strict=True):
            c.result, c.outcomes = r, read_outcomes(r.stderr)
            seen[c.code] = c
        for c in new:
            if c.parse_error is None and c.result is None:
                c.result, c.outcomes = seen[c.code].result, seen[c.code].outcomes
        ranking = rank(self.pool, self.n_trusted, len(self.checks))
        b = ranking.best
        await self._say(f"best so far: candidate {b.index} ({b.origin}), "
                        f"{len(b.passed(ranking.trusted))}/{len(ranking.trusted)} task checks, "
                        f"{len(b.passed(ranking.kept))}/{len(ranking.kept)} model tests")
        return ranking

    async def _run(self, code: str, checks: list[str], probes: list[str] | None = None) -> ExecResult:
        s = self.settings
        return await self.run_code(ExecRequest(
            code=code, test_code=harness(checks, s.check_timeout_s, self.prelude, probes),
            limits=ExecLimits(wall_s=s.sandbox_timeout_s, cpu_s=s.sandbox_cpu_s, memory_mb=s.sandbox_memory_mb),
        ))

    def _traceback(self, c: Candidate, r: Ranking) -> str | None:
        """What went wrong in ``c`` as a traceback, or None when it only gave wrong values."""
        if c.parse_error is not None:
            return c.parse_error
        if c.outcomes is None:
            return verdict_text(c.result) if c.result else None
        raised = c.raised(r.trusted + r.kept)
        return describe_failures(self.checks, raised) if raised else None

    def _next_round(self, r: Ranking, seed: int) -> tuple[list[Ask], list[str]]:
        """Repairs of the best candidates with a traceback, then fresh samples when the best
        fails a trusted check; nothing when the best is clean or the budget is spent."""
        s = self.settings
        room = min(s.candidates, s.max_candidates - len(self.pool))
        if r.satisfied or room <= 0:
            return [], []
        repaired = {c.origin.removeprefix("repair of ") for c in self.pool if c.origin.startswith("repair of ")}
        order = sorted(self.pool, key=lambda c: r.scores[c.index], reverse=True)
        asks: list[Ask] = []
        origins: list[str] = []
        for c in order:
            tb = self._traceback(c, r)
            if tb is None or str(c.index) in repaired or len(asks) >= room:
                continue
            messages = [*c.messages, {"role": "assistant", "content": c.answer}, {"role": "user", "content": repair_prompt(tb)}]
            asks.append(Ask(messages, s.repair_temperature, seed=seed + 1000 + c.index))
            origins.append(f"repair of {c.index}")
        if r.trusted and len(r.best.passed(r.trusted)) < len(r.trusted):
            base = self.pool[0].messages
            for k in range(room - len(asks)):
                asks.append(Ask(base, s.sample_temperature, seed=seed + len(self.pool) + 1 + k))
                origins.append("sampled")
        return asks, origins

    def _accepted(self, r: Ranking) -> bool:
        """Done: the chosen code runs and passes every check of the task's own."""
        return r.best.ran and len(r.best.passed(r.trusted)) == len(r.trusted)

    async def _result(self, job: AgentJob, status: str, error: ErrorInfo | None = None,
                      ranking: Ranking | None = None) -> StepResult:
        if ranking is None and any(c.result is not None or c.parse_error for c in self.pool):
            ranking = rank(self.pool, self.n_trusted, len(self.checks))  # stopped midway: the best seen
        attempts, tests, answer, code = [], [], "", None
        if ranking is not None:
            attempts = [attempt_record(c, ranking, self.checks, self.discarded) for c in self.pool]
            best = ranking.best
            code, verdict = best.code, best.result
            if best.ran and ranking.dropped and status == "done":
                # The verdict shown is of the checks that stand, without the dropped ones.
                verdict = await self._run(best.code, [self.checks[i] for i in ranking.trusted + ranking.kept])
            if verdict is not None:
                tests = [summarize("code+checks", verdict)]
                tests[0].stderr = strip_report(tests[0].stderr)
            answer = answer_text(ranking, self.checks, len(self.pool), self.tests_asked)
        files, diff = edited_files(job.files, code) if code else ([], "")
        return StepResult(
            task_id=job.task_id, step_id=job.step_id, agent="coder", status=status,  # type: ignore[arg-type]
            answer=answer, code=code, tests=tests, attempts=attempts, citations=self.citations,
            files=files, diff=diff, error=error, usage=self.usage,
        )


def _defined(pool: list[Candidate]) -> list[str]:
    """Functions the candidates define at top level (when the task names none)."""
    names: dict[str, None] = {}
    for c in pool:
        try:
            tree = ast.parse(c.code)
        except SyntaxError:
            continue
        names.update((n.name, None) for n in tree.body if isinstance(n, ast.FunctionDef))
    return list(names)
