"""coder-agent's strategy: write, check as soon as written, sample more only while the
evidence does not decide.

1. The task's own checks are collected (trusted.py: its test files, every assert and
   example it states, and checks a caller adds). When they are few, the model also writes
   tests from the task alone — one per rule the task states, quoting it (model_tests.py);
   tests that contradict each other or the task's checks are discarded before anything runs.
2. The first round — ``candidates`` programs (the first greedy: the answer a single call
   would give, streamed; the rest sampled with seeds) and the tests — is written at once in
   the engine's slots. Each program runs in code-sandbox against the checks known the
   moment it ends; when the tests arrive, every program written so far runs them too.
3. ranking.py orders the candidates (stated checks, then rule checks, then CodeT's dual
   agreement over the model's other tests). As soon as the best passes every check that
   stands (the evidence decides) the generations still running are cancelled.
4. Otherwise another round (up to ``max_rounds``, ``max_candidates`` programs in all):
   repairs of the candidates with a traceback (never from a wrong value) and ``samples``
   fresh samples, each checked as it ends, stopping the same way.
5. The answer is the best candidate seen, with one sentence on what it passed and whose
   checks those were; ``done`` only when it passes every check the task stated, and
   flagged ``unverified`` when the task stated none.
"""

from __future__ import annotations

import ast
import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from services.coder_agent.candidates import Ask, CandidateWriter
from services.coder_agent.checks import (
    consistent_checks,
    describe_failures,
    harness,
    read_outcomes,
    strip_report,
)
from services.coder_agent.model_tests import ModelTest, calls_any, parse_model_tests
from services.coder_agent.probes import MAX_PROBES, probe_calls
from services.coder_agent.prompts import (
    STOP,
    code_messages,
    enough_tests,
    extract_code,
    repair_prompt,
    signatures,
    strip_scaffolding,
    task_prompt,
    tests_messages,
)
from services.coder_agent.ranking import Candidate, Ranking, Tiers, rank
from services.coder_agent.report import (
    Provenance,
    answer_text,
    attempt_record,
    edited_files,
    summarize,
    summary_sentence,
    unverified,
    verdict_text,
)
from services.coder_agent.settings import CoderSettings
from services.coder_agent.trusted import (
    TrustedChecks,
    defined_names,
    is_test_file,
    task_function_names,
    trusted_checks,
)
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
PROBE_BASE = 100_000  # outcome indices of probe calls (check indices are below)
TESTS = "tests"  # the tag of the test writer's generation


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
        self.task = TrustedChecks()
        self.checks: list[str] = []  # stated first, then the model's as they arrive
        self.rule_idx: list[int] = []
        self.model_idx: list[int] = []
        self.probes: list[str] = []
        self.written: list[ModelTest] = []
        self.discarded: list[str] = []
        self.tests_asked = False
        self.required: list[str] = []
        self.names: list[str] = []
        self._ran: dict[int, tuple[int, int]] = {}  # candidate index -> (checks, probes) it ran
        self.extra_label = "kept from earlier in the conversation"
        self.task_text = ""
        self._split: set[int] = set()  # candidates whose outcomes came from more than one run

    @property
    def n_trusted(self) -> int:
        return len(self.task.checks)

    @property
    def tiers(self) -> Tiers:
        return Tiers(list(range(self.n_trusted)), list(self.rule_idx), list(self.model_idx))

    async def _say(self, text: str) -> None:
        if self.progress is not None:
            await self.progress(text)

    async def solve(self, job: AgentJob, extra_checks: Sequence[str] = (), extra_label: str | None = None) -> StepResult:
        """Solve ``job``. ``extra_checks`` are trusted like the task's own (e.g. a
        conversation's earlier checks, named ``extra_label`` in the answer); a starting
        program goes in as one of ``job.files`` (the answer is its new content and a diff)."""
        if extra_label:
            self.extra_label = extra_label
        try:
            return await self._solve(job, extra_checks)
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

    async def _solve(self, job: AgentJob, extra_checks: Sequence[str]) -> StepResult:
        s = self.settings
        context = "\n\n".join(c for c in (job.context, await self._retrieve(job)) if c)
        self.task_text = job.text
        prompt = task_prompt(job.text, job.files, context)
        base = code_messages(prompt)
        self.task = trusted_checks(job.text, job.files, extra_checks)
        self.checks = list(self.task.checks)
        self.required = list(dict.fromkeys(self.task.required_names() + task_function_names(job.text)))
        defines = "\n".join(signatures(f.content) for f in job.files if not is_test_file(f))
        self.names = list(dict.fromkeys(self.required + [n for n in defined_names(defines) if not n.startswith("_")]))
        self.probes = probe_calls(self.checks, self.names)
        self.tests_asked = s.write_tests and len(self.checks) < s.tests_below_trusted
        seed = zlib.crc32(job.step_id.encode())
        n = max(1, min(s.candidates, s.max_candidates))
        async with CandidateWriter(self.engine, job, self.usage, s.max_tokens, self.on_token, self.is_cancelled) as writer:
            # The tests are evidence, not the task: an engine error costs only them.
            tests = Ask(tests_messages(prompt, self.names, defines), 0.0, max_tokens=s.tests_max_tokens, stop=STOP,
                        optional=True, enough=partial(enough_tests, n=s.max_tests))
            if self.tests_asked and s.tests_first:
                writer.add(tests, TESTS)
                await self._say("writing tests")
                await self._round(writer, tests_pending=True)
            writer.add(Ask(base, 0.0, stream=True, stop=STOP), (base, "greedy"))
            for k in range(1, n):
                writer.add(Ask(base, s.sample_temperature, seed=seed + k, stop=STOP), (base, "sampled"))
            pending = self.tests_asked and not s.tests_first
            if pending:
                writer.add(tests, TESTS)
            what = f"{n} candidate{'s' * (n != 1)}" + (" and tests" if pending else "")
            await self._say(f"writing {what} in parallel" if n > 1 or pending else f"writing {what}")
            ranking = await self._round(writer, tests_pending=pending)
            for round_no in range(2, s.max_rounds + 1):
                if ranking is None or ranking.decided_by(s.decide_on):
                    break
                asks, origins = self._next_round(ranking, seed)
                if not asks:
                    break
                await self._say(f"round {round_no}: {', '.join(origins)}")
                for ask, origin in zip(asks, origins, strict=True):
                    writer.add(ask, (ask.messages, origin))
                ranking = await self._round(writer, tests_pending=False) or ranking
        if ranking is None:
            raise SyndicateError("no candidate was written")
        status = "done" if self._accepted(ranking) else "failed"
        error = None if status == "done" else ErrorInfo(
            code="tests_failed", message=summary_sentence(ranking, len(self.pool), self._provenance()))
        return await self._result(job, status, error, ranking)

    async def _round(self, writer: CandidateWriter, *, tests_pending: bool) -> Ranking | None:
        """Take the round's generations as they end: check each program at once, add the
        tests when they come; stop the rest as soon as the evidence decides."""
        ranking: Ranking | None = self._rank() if self.pool else None
        while (item := await writer.next()) is not None:
            tag, out = item
            if tag == TESTS:
                tests_pending = False
                self._add_model_tests(extract_code(out.text))
                await self._catch_up(self.pool)
            else:
                messages, origin = tag
                await self._catch_up([self._candidate(out.text, origin, out.output_tokens, out.seconds, messages)])
            if not self.pool:
                continue
            ranking = self._rank()
            if not tests_pending and ranking.decided_by(self.settings.decide_on) and self.settings.early_stop:
                if writer.running:
                    await self._say(f"stopping {writer.running} generation{'s' * (writer.running != 1)}: the evidence decides")
                await writer.stop()
                break
        if writer.running == 0 and any(c.result is None and c.parse_error is None for c in self.pool):
            await self._catch_up(self.pool, force=True)  # no check came: does the code run at all?
            ranking = self._rank()
        if ranking is not None:
            b = ranking.best
            await self._say(f"best so far: candidate {b.index} ({b.origin}), "
                            f"{len(b.passed(ranking.trusted))}/{len(ranking.trusted)} task checks, "
                            f"{len(b.passed(ranking.rules))}/{len(ranking.rules)} rule checks, "
                            f"{len(b.passed(ranking.kept))}/{len(ranking.kept)} model tests")
        return ranking

    def _add_model_tests(self, block: str) -> None:
        """The written tests that stand a chance: not contradicting the task's checks or
        each other (discarded before anything runs), rule checks apart from the rest."""
        self.written = parse_model_tests(block, self.task_text, self.names)
        aimed = [t.source for t in self.written if calls_any(t.source, self.names)]
        kept, self.discarded = consistent_checks(aimed, self.checks)
        self.discarded += [t.source for t in self.written if t.source not in aimed]  # they call none of the names
        rules = {t.source for t in self.written if t.rule}
        for src in kept:
            (self.rule_idx if src in rules else self.model_idx).append(len(self.checks))
            self.checks.append(src)
        new = [p for p in probe_calls(self.checks, self.names) if p not in self.probes]
        self.probes += new[: max(0, MAX_PROBES - len(self.probes))]

    def _rank(self) -> Ranking:
        return rank(self.pool, tiers=self.tiers)

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
        if c.parse_error is None:
            have = set(defined_names(code))
            c.missing = [n for n in self.required if n not in have]
        self.pool.append(c)
        return c

    async def _catch_up(self, candidates: list[Candidate], force: bool = False) -> None:
        """Run each candidate against the checks and probes it has not run yet (a program
        identical to one already run takes its outcomes); with ``force`` also one that has
        nothing new to run but never ran (does it run at all?)."""
        todo: dict[str, list[Candidate]] = {}
        for c in candidates:
            if c.parse_error is not None or (c.result is not None and c.outcomes is None):
                continue  # does not parse, or died before any check: more checks change nothing
            if self._ran.get(c.index, (0, 0)) != (len(self.checks), len(self.probes)) or (force and c.result is None):
                twin = next((t for t in self.pool if t is not c and t.code == c.code and t.index in self._ran), None)
                if twin is not None and self._ran[twin.index] == (len(self.checks), len(self.probes)):
                    c.result, c.outcomes = twin.result, None if twin.outcomes is None else list(twin.outcomes)
                    self._ran[c.index] = self._ran[twin.index]
                    if twin.index in self._split:
                        self._split.add(c.index)
                    continue
                todo.setdefault(c.code, []).append(c)
        if not todo:
            return
        await asyncio.gather(*(self._run_new(group) for group in todo.values()))

    async def _run_new(self, group: list[Candidate]) -> None:
        first = group[0]
        done_checks, done_probes = self._ran.get(first.index, (0, 0))
        checks = list(range(done_checks, len(self.checks)))
        probes = list(range(done_probes, len(self.probes)))
        result = await self._run(first.code, [self.checks[i] for i in checks], [self.probes[i] for i in probes])
        found = read_outcomes(result.stderr)
        outcomes = None
        if found is not None:
            index = checks + [PROBE_BASE + i for i in probes]
            for o in found:
                o.index = index[o.index]
            outcomes = [*(first.outcomes or []), *found]
        for c in group:
            c.result, c.outcomes = result, (list(outcomes) if outcomes is not None else None)
            if done_checks or done_probes:
                self._split.add(c.index)
            self._ran[c.index] = (len(self.checks), len(self.probes))

    async def _run(self, code: str, checks: list[str], probes: list[str] | None = None) -> ExecResult:
        s = self.settings
        return await self.run_code(ExecRequest(
            code=code, test_code=harness(checks, s.check_timeout_s, self.task.prelude, probes),
            limits=ExecLimits(wall_s=s.sandbox_timeout_s, cpu_s=s.sandbox_cpu_s, memory_mb=s.sandbox_memory_mb),
        ))

    def _traceback(self, c: Candidate, r: Ranking) -> str | None:
        """What went wrong in ``c`` as a traceback, or None when it only gave wrong values."""
        if c.parse_error is not None:
            return c.parse_error
        if c.outcomes is None:
            return verdict_text(c.result) if c.result else None
        raised = c.raised(r.standing)
        return describe_failures(self.checks, raised) if raised else None

    def _next_round(self, r: Ranking, seed: int) -> tuple[list[Ask], list[str]]:
        """Repairs of the candidates with a traceback (best first), then fresh samples while
        the evidence does not decide; nothing when there is no evidence to decide by or the
        budget is spent."""
        s = self.settings
        room = s.max_candidates - len(self.pool)
        if r.decided_by(s.decide_on) or room <= 0:
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
            asks.append(Ask(messages, s.repair_temperature, seed=seed + 1000 + c.index, stop=STOP))
            origins.append(f"repair of {c.index}")
        b = r.best
        wrong_value = b.ran and not b.raised(r.standing) and len(b.passed(r.standing)) < len(r.standing)
        # Fresh samples for a wrong value (a repair would only be told the value), or when
        # nothing can be repaired; only where checks can tell samples apart.
        if (wrong_value or not asks) and r.standing:
            base = self.pool[0].messages
            for k in range(min(s.samples, room - len(asks))):
                asks.append(Ask(base, s.sample_temperature, seed=seed + len(self.pool) + 1 + k, stop=STOP))
                origins.append("sampled")
        return asks, origins

    def _accepted(self, r: Ranking) -> bool:
        """Done: the chosen code runs, defines what the task names and passes every check
        the task stated."""
        b = r.best
        return b.ran and not b.missing and len(b.passed(r.trusted)) == len(r.trusted)

    def _provenance(self) -> Provenance:
        return Provenance(stated=self.task.stated, extra=self.task.extra, extra_label=self.extra_label,
                          tests_asked=self.tests_asked)

    async def _result(self, job: AgentJob, status: str, error: ErrorInfo | None = None,
                      ranking: Ranking | None = None) -> StepResult:
        if ranking is None and any(c.result is not None or c.parse_error for c in self.pool):
            ranking = self._rank()  # stopped midway: the best seen
        attempts, tests, answer, code, flag = [], [], "", None, False
        if ranking is not None:
            attempts = [attempt_record(c, ranking, self.checks, self.discarded) for c in self.pool]
            best = ranking.best
            code, verdict = best.code, best.result
            if best.ran and status == "done" and (ranking.dropped or best.index in self._split):
                # The verdict shown is of the checks that stand, in one run, without the dropped ones.
                verdict = await self._run(best.code, [self.checks[i] for i in ranking.standing])
            if verdict is not None:
                tests = [summarize("code+checks", verdict)]
                tests[0].stderr = strip_report(tests[0].stderr)
            answer = answer_text(ranking, self.checks, len(self.pool), self._provenance())
            flag = status == "done" and unverified(ranking)
        files, diff = edited_files(job.files, code) if code else ([], "")
        return StepResult(
            task_id=job.task_id, step_id=job.step_id, agent="coder", status=status,  # type: ignore[arg-type]
            answer=answer, code=code, tests=tests, attempts=attempts, citations=self.citations,
            files=files, diff=diff, error=error, usage=self.usage, unverified=flag,
        )
