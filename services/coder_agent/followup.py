"""Follow-ups: a code task that continues a thread edits the last program and keeps the
checks it held.

``prepare`` turns a job with earlier turns (``AgentJob.thread``) into what the solver
takes: the earlier requests and the last program become the context, with the change
asked restated after the program (a small model handed the program as a file to return
copies it back unchanged: the request must be the last thing it reads), and the checks
the last program held come along:

- the checks a person stated (the task's examples and test files, in any earlier turn)
  are **regression checks**, trusted like this task's own: a candidate that breaks one
  ranks below every one that keeps it, and the task is ``done`` only when they all hold;
- the tests the model wrote earlier are only **reported**: a change of requirement often
  changes exactly the behaviour such a test pinned (and no person said it), so the
  answer says which still hold instead of refusing the change;
- an earlier check the new request restates with another value (``f(2) == 5`` now,
  ``f(2) == 4`` before) is superseded: the new request wins.

``solve`` runs the solver, gives the result the edited program as a file with its diff
against the last one, and records every check with its origin and whether the chosen
code holds it (``StepResult.checks``): the next turn carries the ones that held.
"""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.coder_agent.checks import harness, read_outcomes
from services.coder_agent.ranking import rank
from services.coder_agent.report import edited_files
from services.coder_agent.solver import CodeSolver
from services.coder_agent.trusted import is_test_file, trusted_checks
from shared.contracts import (
    AgentJob,
    CheckRecord,
    ExecLimits,
    ExecRequest,
    ExecResult,
    FileIn,
    StepResult,
    ThreadTurn,
)

RunCode = Callable[[ExecRequest], Awaitable[ExecResult]]
START_FILE = "solution.py"  # the last program, as the file the follow-up's answer edits
MAX_REQUESTS = 6  # earlier requests quoted in the prompt (the latest ones)


@dataclass
class FollowUp:
    """A job ready for the solver, and the earlier checks it carries."""

    job: AgentJob
    enforced: list[CheckRecord] = field(default_factory=list)  # stated earlier: trusted
    reported: list[CheckRecord] = field(default_factory=list)  # the model's earlier tests: run, not enforced
    superseded: list[CheckRecord] = field(default_factory=list)
    source: ThreadTurn | None = None  # the turn whose program is edited
    edits: str | None = None  # that program, when the answer is its new version

    @property
    def label(self) -> str:
        return "kept from earlier in the conversation" if self.source is None else \
            f"kept from earlier in the conversation (task {self.source.task_id})"


def prepare(job: AgentJob) -> FollowUp:
    """The job as the solver takes it (unchanged when it continues nothing with code)."""
    last = next((t for t in reversed(job.thread) if t.code), None)
    if last is None:
        return FollowUp(job) if not job.thread else FollowUp(job.model_copy(update={"context": _context(job, None)}))
    own_files = any(not is_test_file(f) for f in job.files)  # the request brings the file to edit itself
    restated = _calls(trusted_checks(job.text, [f for f in job.files if is_test_file(f)]).checks)
    out = FollowUp(job.model_copy(update={"context": _context(job, None if own_files else last)}), source=last,
                   edits=None if own_files else last.code)
    for check in last.checks:
        if not check.held:
            continue
        carried = check.model_copy(update={"turn": check.turn or last.task_id, "held": None})
        new = restated.get(_call(check.check) or "")
        if new is not None and new != check.check:
            out.superseded.append(carried.model_copy(update={"note": f"superseded by this request's `{new}`"}))
        elif check.source == "task":
            out.enforced.append(carried)
        else:
            out.reported.append(carried)
    return out


def _context(job: AgentJob, last: ThreadTurn | None) -> str:
    """The earlier requests, then the program written for them and the change asked."""
    asked = [t.text.strip() for t in job.thread][-MAX_REQUESTS:]
    lines = ["This continues a conversation. Earlier requests, oldest first:", *(f"- {a}" for a in asked)]
    if last is not None:
        lines += ["The program written for them:", f"```python\n{(last.code or '').rstrip()}\n```",
                  f"Now change that program as asked: {job.text.strip()}",
                  "Keep what the earlier requests asked unless this change says otherwise, and answer with the "
                  "whole changed program."]
    return "\n".join(filter(None, [job.context.strip(), "\n".join(lines)]))


def _call(check: str) -> str | None:
    """The call an ``assert CALL == VALUE`` check makes (normalised), else None."""
    try:
        node = ast.parse(check.strip()).body[0]
    except (SyntaxError, IndexError):
        return None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 \
            and isinstance(node.test.ops[0], ast.Eq | ast.Is):
        return ast.unparse(node.test.left)
    return None


def _calls(checks: list[str]) -> dict[str, str]:
    return {call: c for c in checks if (call := _call(c)) is not None}


async def solve(solver: CodeSolver, job: AgentJob, run_code: RunCode) -> StepResult:
    """Solve ``job`` (a follow-up or not) and record every check of its answer."""
    follow = prepare(job)
    result = await solver.solve(follow.job, [c.check for c in follow.enforced], follow.label)
    if not solver.pool or result.code is None:
        return result
    if follow.edits is not None:
        result.files, result.diff = edited_files([FileIn(path=START_FILE, content=follow.edits)], result.code)
        if not result.diff:
            result.answer += "\n\nThe program is the same as the previous turn's: no change was made."
    result.checks = own_checks(solver, follow) + await reported(follow, result.code, solver, run_code) + follow.superseded
    earlier = [c for c in result.checks if c.turn and c.held is not None]
    if earlier:
        result.answer += "\n\n" + earlier_sentence(earlier)
    return result


def own_checks(solver: CodeSolver, follow: FollowUp) -> list[CheckRecord]:
    """The checks the solver ran, each with its origin and whether the chosen code holds it."""
    ranking = rank(solver.pool, tiers=solver.tiers)
    best = ranking.best
    held = set(best.passed(ranking.standing)) if best.ran else set()
    origin = {c.check: c.turn for c in follow.enforced}
    stated, trusted = solver.task.stated, len(solver.task.checks)
    out = []
    for i, check in enumerate(solver.checks):
        if i < trusted:
            rec = CheckRecord(check=check, source="task", turn=origin.get(check, "") if i >= stated else "")
        else:
            rec = CheckRecord(check=check, source="model")
        if i in ranking.dropped:
            rec.note = "set aside: most candidates fail it"
        else:
            rec.held = i in held
        out.append(rec)
    return out


async def reported(follow: FollowUp, code: str, solver: CodeSolver, run_code: RunCode) -> list[CheckRecord]:
    """The model's earlier tests, run once against the chosen code (not enforced)."""
    if not follow.reported:
        return []
    s = solver.settings
    checks = [c.check for c in follow.reported]
    result = await run_code(ExecRequest(code=code, test_code=harness(checks, s.check_timeout_s, solver.task.prelude),
                                        limits=ExecLimits(wall_s=s.sandbox_timeout_s, cpu_s=s.sandbox_cpu_s,
                                                          memory_mb=s.sandbox_memory_mb)))
    ok = {o.index for o in read_outcomes(result.stderr) or [] if o.ok}
    note = "an earlier test the model wrote: reported, not enforced"
    return [c.model_copy(update={"held": i in ok, "note": note}) for i, c in enumerate(follow.reported)]


def earlier_sentence(earlier: list[CheckRecord]) -> str:
    """Which earlier checks still hold, and the ones that no longer do."""
    held = [c for c in earlier if c.held]
    text = f"Earlier checks of this conversation: {len(held)} of {len(earlier)} still hold."
    broken = [c for c in earlier if not c.held]
    if broken:
        text += " No longer holding:\n```python\n" + "\n".join(
            f"{c.check}  # {'stated in' if c.source == 'task' else 'a test the model wrote for'} task {c.turn}"
            for c in broken) + "\n```"
    return text
