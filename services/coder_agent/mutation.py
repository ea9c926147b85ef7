"""coder-agent's "mutate" jobs: one candidate program for an evolution run.

The router's evolution loop writes the prompt (task, parent programs with their scores
and sandbox verdicts); this writes one complete program back. There are no tests and no
repair-from-tests loop here: the run scores every candidate itself in code-sandbox, and
its next prompts show the verdicts. The only repair is for code that does not parse,
which could never score. Sampling is seeded from the step id, so two candidates asked
with the same prompt still differ and a redelivered job writes the same candidate.
"""

from __future__ import annotations

import ast
import time

from services.coder_agent.prompts import extract_code, strip_scaffolding
from shared.contracts import AgentJob, Attempt, ErrorInfo, StepResult, Usage
from shared.errors import Cancelled, DeadlineExceeded, SyndicateError
from shared.evolve.candidate import MUTATE_SYSTEM, sample_seed
from shared.llm.base import GenerationRequest, TextEngine

MAX_SYNTAX_REPAIRS = 1


def syntax_error(code: str) -> str | None:
    """The parser's complaint about ``code``, or None when it parses."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return None


def drop_example_usage(code: str) -> str:
    """Without top-level assignments that call the program's own functions — the
    "example usage" (``scores = [pack([3, 4], 10)]``) small models append, which runs at
    import time in the scorer and often crashes there. Unparseable code is returned as is."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    drop = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and node.value is not None:
            calls = {c.func.id for c in ast.walk(node.value) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            if calls & own and node.end_lineno is not None:
                drop.append((node.lineno, node.end_lineno))
    if not drop:
        return code
    lines = code.splitlines(keepends=True)
    kept = [ln for n, ln in enumerate(lines, 1) if not any(a <= n <= b for a, b in drop)]
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith("#")):
        kept.pop()  # the "# Example usage" comment left behind
    return "".join(kept).rstrip() + "\n"


async def mutate(engine: TextEngine, job: AgentJob, default_max_tokens: int = 768) -> StepResult:
    """Write one candidate program for ``job`` (a ``mode="mutate"`` AgentJob)."""
    usage = Usage(model=engine.name)
    attempts: list[Attempt] = []
    messages = [{"role": "system", "content": MUTATE_SYSTEM}, {"role": "user", "content": job.text}]
    seed = sample_seed(job.step_id)

    def result(status: str, error: ErrorInfo | None = None) -> StepResult:
        code = attempts[-1].code if attempts else None
        return StepResult(
            task_id=job.task_id, step_id=job.step_id, agent="coder", status=status,  # type: ignore[arg-type]
            answer=f"```python\n{code}```" if code else "", code=code, attempts=attempts, error=error, usage=usage,
        )

    try:
        for n in range(1, MAX_SYNTAX_REPAIRS + 2):
            started = time.monotonic()
            out = await engine.generate(GenerationRequest(
                messages=messages, max_tokens=job.max_tokens or default_max_tokens,
                temperature=job.temperature or 0.0, seed=seed + n - 1, deadline=job.deadline,
                # Its own id: a run's candidates generate side by side; cancel(run id) still
                # stops them all (sub-ids "<run>.<step>", shared/agent.py MeteredEngine.cancel).
                request_id=job.step_id,
            ))
            usage.input_tokens += out.input_tokens
            usage.output_tokens += out.output_tokens
            usage.seconds += out.seconds
            code = drop_example_usage(strip_scaffolding(extract_code(out.text)))
            problem = syntax_error(code) if code.strip() else "the answer holds no code"
            attempts.append(Attempt(n=n, code=code, passed=problem is None, tokens=out.output_tokens,
                                    seconds=round(time.monotonic() - started, 3)))
            if problem is None:
                return result("done")
            messages += [
                {"role": "assistant", "content": out.text},
                {"role": "user", "content": f"That code does not parse: {problem}. "
                                            "Answer with the complete corrected program in one ```python block."},
            ]
        return result("failed", ErrorInfo(code="no_code", message=f"no parseable program: {problem}"))
    except Cancelled as exc:
        return result("cancelled", ErrorInfo(code=exc.code, message=exc.message))
    except DeadlineExceeded as exc:
        return result("timeout", ErrorInfo(code=exc.code, message=exc.message))
    except SyndicateError as exc:
        return result("failed", ErrorInfo(code=exc.code, message=exc.message))
