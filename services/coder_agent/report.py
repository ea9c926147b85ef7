"""What coder-agent hands back: the chosen code with one sentence on what it passed and
whose checks those were, the record of every candidate tried, sandbox verdicts as the
CLI shows them, edited files."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from services.coder_agent.checks import describe_failures, strip_report
from services.coder_agent.ranking import Candidate, Ranking
from services.coder_agent.trusted import is_test_file
from shared.contracts import Attempt, ExecResult, FileIn, SandboxRunSummary


@dataclass(frozen=True)
class Provenance:
    """Where the stated checks came from: the first ``stated`` from the task, the rest
    (``extra``) from a caller, named by ``extra_label``."""

    stated: int
    extra: int = 0
    extra_label: str = "kept from earlier in the conversation"
    tests_asked: bool = False


def summarize(name: str, r: ExecResult) -> SandboxRunSummary:
    return SandboxRunSummary(
        name=name, status=r.status, exit_code=r.exit_code, stdout=r.stdout[-4000:], stderr=r.stderr[-4000:],
        wall_s=r.wall_s, isolation=r.isolation,
    )


def verdict_text(r: ExecResult) -> str:
    """What the model is shown of a run that died: the status and the tail of the output."""
    head = f"status: {r.status}, exit code: {r.exit_code}" + (f", signal: {r.signal}" if r.signal else "")
    return f"{head}\n{strip_report(r.stderr or r.stdout or r.message).strip()[-2000:]}"


def unverified(r: Ranking) -> bool:
    """No check the task (or its caller) stated stands behind the answer."""
    return not r.trusted


def summary_sentence(r: Ranking, tried: int, p: Provenance) -> str:
    """One plain sentence: which checks the chosen code passed, whose checks they were (the
    task's, its rules as the model wrote them, the model's own tests), and how many
    candidates were tried; said first when no check of the task's own stands behind it,
    or when the code does not define a function the task's checks call."""
    b = r.best
    chosen = f"chosen from {tried} candidate{'s' * (tried != 1)} (candidate {b.index}, {b.origin})"
    lead = ""
    if b.missing:
        names = ", ".join(f"`{n}`" for n in b.missing)
        lead = f"It does not define {names}, the name{'s' * (len(b.missing) != 1)} the task's checks call (a renamed function fails them). "
    if not b.ran:
        why = b.parse_error or (b.result.status if b.result else "it did not run")
        return f"{lead}No candidate ran to the checks (the best one failed: {why}); {chosen}."
    task, extra = r.trusted[: p.stated], r.trusted[p.stated:]
    parts = []
    if task:
        parts.append(_share(len(b.passed(task)), len(task), "check", "from the task"))
    if extra:
        parts.append(_share(len(b.passed(extra)), len(extra), "check", p.extra_label))
    if r.rules:
        parts.append(_share(len(b.passed(r.rules)), len(r.rules), "check", "the model wrote from the task's rules"))
    if r.kept:
        parts.append(_share(len(b.passed(r.kept)), len(r.kept), "test", "the model wrote itself"))
    if unverified(r):
        lead += "Unverified by the task: it states no example to check the code against, so "
        if not parts:
            none = "the model wrote none the candidates agreed on" if p.tests_asked else "no tests were written"
            return f"{lead}the code only runs ({none}); {chosen}."
        return f"{lead}it {' and '.join(parts)}; {chosen}."
    return f"{lead}It {' and '.join(parts)}; {chosen}."


def _share(passed: int, total: int, noun: str, whose: str) -> str:
    """"passes all 3 checks from the task", "passes 2 of the 3 tests ...", "fails the only check ..."."""
    if total == 1:
        return f"{'passes' if passed else 'fails'} the only {noun} {whose}"
    if passed == total:
        return f"passes {'both' if total == 2 else f'all {total}'} {noun}s {whose}"
    return f"passes {'none' if passed == 0 else passed} of the {total} {noun}s {whose}"


def answer_text(r: Ranking, checks: list[str], tried: int, p: Provenance) -> str:
    """The chosen code, the sentence, and the checks it passed (none of the dropped ones)."""
    best = r.best
    text = f"```python\n{best.code}```\n\n{summary_sentence(r, tried, p)}"
    passed = [checks[i] for i in best.passed(r.standing)]
    if passed:
        text += "\n\nChecks it passed:\n```python\n" + "\n".join(passed) + "\n```"
    return text


def attempt_record(c: Candidate, r: Ranking, checks: list[str], discarded: list[str]) -> Attempt:
    """One candidate as the step's record keeps it; the chosen one lists the model's tests
    that were set aside (contradictory, or failed by most candidates)."""
    standing = r.standing
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
