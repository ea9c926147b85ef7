"""coder-agent's loop: write code (and tests when the task has none), run them in
code-sandbox, feed failures back to the model, stop at the first pass."""

from __future__ import annotations

import ast
import difflib
import time
from collections.abc import Awaitable, Callable

from services.coder_agent.checks import (
    describe_failures,
    harness,
    read_outcomes,
    split_checks,
    strip_report,
)
from services.coder_agent.prompts import (
    SYSTEM,
    TESTS_SYSTEM,
    extract_code,
    provided_tests,
    repair_prompt,
    strip_scaffolding,
    task_prompt,
    tests_prompt,
)
from services.coder_agent.settings import CoderSettings
from shared.contracts import (
    AgentJob,
    Attempt,
    Citation,
    ErrorInfo,
    ExecLimits,
    ExecRequest,
    ExecResult,
    FileIn,
    SandboxRunSummary,
    SearchReply,
    SearchRequest,
    StepResult,
    Usage,
)
from shared.errors import Cancelled, DeadlineExceeded, SyndicateError
from shared.llm.base import GenerationRequest, GenerationResult, TextEngine, TokenCallback

RunCode = Callable[[ExecRequest], Awaitable[ExecResult]]
Search = Callable[[SearchRequest], Awaitable[SearchReply]]
Progress = Callable[[str], Awaitable[None]]


def summarize(name: str, r: ExecResult) -> SandboxRunSummary:
    return SandboxRunSummary(
        name=name, status=r.status, exit_code=r.exit_code, stdout=r.stdout[-4000:], stderr=r.stderr[-4000:],
        wall_s=r.wall_s, isolation=r.isolation,
    )


def verdict_text(r: ExecResult) -> str:
    """What the model is shown of a failed run: the status and the tail of the output."""
    head = f"status: {r.status}, exit code: {r.exit_code}" + (f", signal: {r.signal}" if r.signal else "")
    return f"{head}\n{(r.stderr or r.stdout or r.message).strip()[-2000:]}"


class CodeSolver:
    def __init__(
        self, engine: TextEngine, run_code: RunCode, settings: CoderSettings,
        on_token: TokenCallback | None = None, progress: Progress | None = None, search: Search | None = None,
    ) -> None:
        self.search = search
        self.citations: list[Citation] = []
        self.engine = engine
        self.run_code = run_code
        self.settings = settings
        self.on_token = on_token
        self.progress = progress
        self.usage = Usage(model=engine.name)

    async def _generate(self, job: AgentJob, messages: list[dict[str, str]], stream: bool = True,
                        max_tokens: int | None = None, temperature: float = 0.0) -> str:
        req = GenerationRequest(
            messages=messages, max_tokens=max_tokens or job.max_tokens or self.settings.max_tokens, temperature=temperature,
            deadline=job.deadline, request_id=job.task_id,
        )
        out: GenerationResult = await self.engine.generate(req, self.on_token if stream else None)
        self.usage.input_tokens += out.input_tokens
        self.usage.output_tokens += out.output_tokens
        self.usage.seconds += out.seconds
        if self.usage.ttft_s is None:
            self.usage.ttft_s = out.ttft_s
        return out.text

    async def _say(self, text: str) -> None:
        if self.progress is not None:
            await self.progress(text)

    async def solve(self, job: AgentJob) -> StepResult:
        attempts: list[Attempt] = []
        try:
            return await self._solve(job, attempts)
        except Cancelled as exc:
            return self._result(job, "cancelled", attempts, ErrorInfo(code=exc.code, message=exc.message))
        except DeadlineExceeded as exc:
            return self._result(job, "timeout", attempts, ErrorInfo(code=exc.code, message=exc.message))
        except SyndicateError as exc:
            return self._result(job, "failed", attempts, ErrorInfo(code=exc.code, message=exc.message))

    async def _retrieve(self, job: AgentJob) -> str:
        """Passages from the task's collection, labelled like the reasoner's citations."""
        if not job.collection or self.search is None:
            return ""
        await self._say(f"searching collection '{job.collection}'")
        reply = await self.search(SearchRequest(query=job.text[:2000], collection=job.collection, top_k=self.settings.top_k))
        hits = [h for h in reply.hits if h.score >= self.settings.min_score]
        self.citations = [Citation(path=h.path, start_line=h.start_line, end_line=h.end_line, score=h.score) for h in hits]
        return "\n\n".join(f"[{h.path}:{h.start_line}-{h.end_line}]\n{h.text.strip()}" for h in hits)

    async def _solve(self, job: AgentJob, attempts: list[Attempt]) -> StepResult:
        context = "\n\n".join(c for c in (job.context, await self._retrieve(job)) if c)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task_prompt(job.text, job.files, context)}]
        provided = provided_tests(job.text, job.files)
        trusted = bool(provided)  # the task's own tests are never disputed
        checks = task_checks(provided) if provided else []
        disputed: set[int] = set()
        last_failures: dict[int, str | None] = {}
        for n in range(1, self.settings.max_attempts + 1):
            started = time.monotonic()
            tokens_before = self.usage.output_tokens
            await self._say(f"writing code (attempt {n}/{self.settings.max_attempts})" if n == 1 else f"repairing (attempt {n}/{self.settings.max_attempts})")
            answer = await self._generate(job, messages, temperature=0.0 if n == 1 else self.settings.repair_temperature)
            code = strip_scaffolding(extract_code(answer))
            if not checks and self.settings.write_tests:
                await self._say("writing tests")
                checks = split_checks(extract_code(await self._generate(job, [
                    {"role": "system", "content": TESTS_SYSTEM},
                    {"role": "user", "content": tests_prompt(job.text, code)},
                ], stream=False, max_tokens=self.settings.tests_max_tokens)))
            await self._say(f"running code and {len(checks)} checks in code-sandbox")
            result = await self.run_code(ExecRequest(
                code=code, test_code=harness(checks) if checks else None, task_id=job.task_id,
                limits=ExecLimits(wall_s=self.settings.sandbox_timeout_s, memory_mb=self.settings.sandbox_memory_mb),
            ))
            outcomes = read_outcomes(result.stderr)
            failing = [o for o in outcomes or [] if not o.ok and o.index not in disputed]
            if not trusted and n > 1 and outcomes:
                # Shown this check's failure, the model answered with a program that gives the
                # same value again: it stands by its answer against a line it wrote itself.
                # Only a minority of checks can be overruled so, and only when some pass.
                insisted = {o.index for o in failing if o.actual is not None and last_failures.get(o.index) == o.actual}
                passing = sum(o.ok for o in outcomes)
                if insisted and passing and len(disputed | insisted) * 2 <= len(outcomes):
                    disputed |= insisted
                failing = [o for o in failing if o.index not in disputed]
            last_failures = {o.index: o.actual for o in outcomes or [] if not o.ok}
            if outcomes is None:
                passed = result.status == "ok" and result.exit_code == 0 and not checks
            else:
                passed = not failing and result.status in ("ok", "runtime_error")
            if passed and result.status != "ok" and disputed:
                # Show the verdict of the checks that stand: run once more without the disputed ones.
                kept = [c for i, c in enumerate(checks) if i not in disputed]
                result = await self.run_code(ExecRequest(
                    code=code, test_code=harness(kept) if kept else None, task_id=job.task_id,
                    limits=ExecLimits(wall_s=self.settings.sandbox_timeout_s, memory_mb=self.settings.sandbox_memory_mb),
                ))
                passed = result.status == "ok" and result.exit_code == 0
            summary = summarize("code+tests", result)
            # The harness's machine-readable line becomes a readable list of failing checks.
            summary.stderr = "\n".join(t for t in (strip_report(summary.stderr).strip(), describe_failures(checks, failing)) if t)
            attempts.append(Attempt(
                n=n, code=code, tests="\n".join(checks), verdicts=[summary], passed=passed,
                disputed=[checks[i] for i in sorted(disputed)],
                tokens=self.usage.output_tokens - tokens_before, seconds=round(time.monotonic() - started, 3),
            ))
            if passed:
                await self._say(f"checks passed on attempt {n}" + (f" ({len(disputed)} disputed)" if disputed else ""))
                return self._result(job, "done", attempts)
            await self._say(f"attempt {n} failed: {result.status}, {len(failing)} failing checks")
            feedback = describe_failures(checks, failing) if failing else verdict_text(result)
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": repair_prompt(feedback)}]
        return self._result(job, "failed", attempts, ErrorInfo(
            code="tests_failed", message=f"code did not pass its tests in {len(attempts)} attempts"))

    def _result(self, job: AgentJob, status: str, attempts: list[Attempt], error: ErrorInfo | None = None) -> StepResult:
        last = attempts[-1] if attempts else None
        code = last.code if last else None
        files, diff = edited_files(job.files, code) if code else ([], "")
        verdict = "passed" if last and last.passed else "failed"
        answer = f"```python\n{code}```\n\nTests {verdict} (attempt {last.n} of {self.settings.max_attempts})." if last and code else ""
        if last and last.disputed:
            answer += f" Disputed model-written checks (the code kept its answer after seeing them fail): {'; '.join(last.disputed)}"
        return StepResult(
            task_id=job.task_id, step_id=job.step_id, agent="coder", status=status,  # type: ignore[arg-type]
            answer=answer, code=code, tests=last.verdicts if last else [], attempts=attempts, citations=self.citations,
            files=files, diff=diff, error=error, usage=self.usage,
        )


def task_checks(tests: str) -> list[str]:
    """The task's own tests as checks: its statements, then a call of each test_* function."""
    checks = split_checks(tests, limit=200)
    try:
        names = [n.name for n in ast.parse(tests).body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    except SyntaxError:
        names = []
    return checks + [f"{name}()" for name in names]


def edited_files(files: list[FileIn], code: str) -> tuple[list[FileIn], str]:
    """The task's (first non-test) file with its new content, and the unified diff."""
    targets = [f for f in files if not f.path.rsplit("/", 1)[-1].startswith("test_")]
    if not targets:
        return [], ""
    f = targets[0]
    diff = "".join(difflib.unified_diff(
        f.content.splitlines(keepends=True), code.splitlines(keepends=True), f"a/{f.path}", f"b/{f.path}"))
    return [FileIn(path=f.path, content=code)], diff
