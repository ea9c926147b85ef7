"""What coder-agent hands back: the chosen code with one sentence on what it passed, the
record of every candidate tried, sandbox verdicts as the CLI shows them, edited files."""

from __future__ import annotations

import difflib

from services.coder_agent.checks import describe_failures, strip_report
from services.coder_agent.ranking import Candidate, Ranking, summary_sentence
from services.coder_agent.trusted import is_test_file
from shared.contracts import Attempt, ExecResult, FileIn, SandboxRunSummary


def summarize(name: str, r: ExecResult) -> SandboxRunSummary:
    return SandboxRunSummary(
        name=name, status=r.status, exit_code=r.exit_code, stdout=r.stdout[-4000:], stderr=r.stderr[-4000:],
        wall_s=r.wall_s, isolation=r.isolation,
    )


def verdict_text(r: ExecResult) -> str:
    """What the model is shown of a run that died: the status and the tail of the output."""
    head = f"status: {r.status}, exit code: {r.exit_code}" + (f", signal: {r.signal}" if r.signal else "")
    return f"{head}\n{strip_report(r.stderr or r.stdout or r.message).strip()[-2000:]}"


def answer_text(r: Ranking, checks: list[str], tried: int, tests_asked: bool) -> str:
    """The chosen code, the sentence, and the checks it passed (none of the dropped ones)."""
    best = r.best
    text = f"```python\n{best.code}```\n\n{summary_sentence(r, tried, tests_asked)}"
    passed = [checks[i] for i in best.passed(r.trusted + r.kept)]
    if passed:
        text += "\n\nChecks it passed:\n```python\n" + "\n".join(passed) + "\n```"
    return text


def attempt_record(c: Candidate, r: Ranking, checks: list[str], discarded: list[str]) -> Attempt:
    """One candidate as the step's record keeps it; the chosen one lists the model's tests
    that were set aside (contradictory, or failed by most candidates)."""
    standing = r.trusted + r.kept
    chosen = c is r.best
    verdicts = []
    if c.result is not None:
        v = summarize("code+checks", c.result)
        failing = [o for o in c.outcomes or [] if o.index in set(standing) and not o.ok]
        v.stderr = "\n".join(t for t in (strip_report(v.stderr).strip(), describe_failures(checks, failing)) if t)
        verdicts.append(v)
    elif c.parse_error:
        verdicts.append(SandboxRunSummary(name="parse", status="runtime_error", stderr=c.parse_error))
    return Attempt(
        n=c.index, code=c.code, tests="\n".join(checks[i] for i in standing), verdicts=verdicts,
        passed=c.ran and len(c.passed(standing)) == len(standing), origin=c.origin, chosen=chosen,
        dropped=[checks[i] for i in r.dropped] + discarded if chosen else [], tokens=c.tokens, seconds=c.seconds,
    )


def edited_files(files: list[FileIn], code: str) -> tuple[list[FileIn], str]:
    """The task's (first non-test) file with its new content, and the unified diff."""
    targets = [f for f in files if not is_test_file(f)]
    if not targets:
        return [], ""
    f = targets[0]
    diff = "".join(difflib.unified_diff(
        f.content.splitlines(keepends=True), code.splitlines(keepends=True), f"a/{f.path}", f"b/{f.path}"))
    return [FileIn(path=f.path, content=code)], diff
