"""Turning test code into separate checks, running them one by one inside the sandboxed
program, and reading back what each did.

Model-written tests from a small model are often truncated (cut at max_tokens) or simply
wrong (``assert is_prime(51) == True``). So each assert runs on its own, its actual value
is reported, incomplete statements are dropped, and a model-written assert that two
model, shown its failure, answers again with a program giving the same value is *disputed*:
the model stood by its answer against a line it wrote itself — as long as such lines are
at most half of the checks and some checks pass. The task's own tests
(test files, assert lines, doctest examples) are never disputed.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

MARKER = "__SYNDICATE_CHECKS__"
MAX_CHECKS = 12

# Appended after the solution inside the sandbox: runs each check, prints one JSON line.
_HARNESS = '''
def __syndicate_run_checks(checks):
    import json as _json, sys as _sys
    out = []
    for i, (src, lhs) in enumerate(checks):
        rec = {"i": i, "ok": True, "actual": None, "error": ""}
        try:
            if lhs is not None:
                try:
                    rec["actual"] = repr(eval(lhs, globals()))[:200]
                except Exception:
                    pass
            exec(src, globals())
        except AssertionError as e:
            rec["ok"] = False
            rec["error"] = "AssertionError" + (": " + str(e) if str(e) else "")
        except BaseException as e:
            rec["ok"] = False
            rec["actual"] = None
            rec["error"] = type(e).__name__ + ": " + str(e)[:300]
        out.append(rec)
    print("@MARKER@" + _json.dumps(out), file=_sys.stderr)
    _sys.exit(0 if all(r["ok"] for r in out) else 1)


__syndicate_run_checks(@CHECKS@)
'''


@dataclass
class CheckOutcome:
    index: int
    ok: bool
    actual: str | None
    error: str


def split_checks(tests: str, limit: int = MAX_CHECKS) -> list[str]:
    """Top-level statements of ``tests`` that parse on their own (truncated ones dropped)."""
    try:
        tree = ast.parse(tests)
        stmts = [ast.get_source_segment(tests, node) or "" for node in tree.body]
    except SyntaxError:
        stmts = []
        for line in tests.splitlines():
            try:
                ast.parse(line.strip())
            except SyntaxError:
                continue
            if line.strip():
                stmts.append(line.strip())
    return [s for s in stmts if s.strip()][:limit]


def doctest_checks(text: str, limit: int = 50) -> list[str]:
    """``>>> f(2)`` / ``4`` examples of a task (HumanEval-style docstrings) as assert checks."""
    import doctest

    checks: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return checks
    for ex in examples:
        source = ex.source.strip()
        # The closing quotes of a docstring right after an example belong to no output.
        want = "\n".join(ln for ln in ex.want.splitlines() if ln.strip() not in ('"""', "'''")).strip()
        if not want or "\n" in source or "\n" in want:
            continue
        try:
            ast.parse(source, mode="eval")
            ast.parse(want, mode="eval")
        except SyntaxError:
            continue
        checks.append(f"assert {source} == {want}")
    return checks[:limit]


def _lhs(stmt: str) -> str | None:
    """For ``assert X == Y``: the source of X, so its actual value can be reported."""
    try:
        node = ast.parse(stmt).body[0]
    except (SyntaxError, IndexError):
        return None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 \
            and isinstance(node.test.ops[0], ast.Eq):
        return ast.unparse(node.test.left)
    return None


def harness(checks: list[str]) -> str:
    """Test code for the sandbox: runs each check separately and reports every outcome."""
    return _HARNESS.replace("@MARKER@", MARKER).replace("@CHECKS@", repr([(c, _lhs(c)) for c in checks]))


def read_outcomes(stderr: str) -> list[CheckOutcome] | None:
    """The harness's report, or None when the program died before reaching it."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
            except ValueError:
                return None
            return [CheckOutcome(index=d["i"], ok=d["ok"], actual=d["actual"], error=d["error"]) for d in data]
    return None


def describe_failures(checks: list[str], outcomes: list[CheckOutcome]) -> str:
    """What the model is shown: each failing check with what the code actually returned."""
    lines = []
    for o in outcomes:
        if o.ok:
            continue
        got = f"the left side evaluated to {o.actual}" if o.actual is not None else o.error
        lines.append(f"{checks[o.index]}\n    -> failed: {got}")
    return "\n".join(lines)


def strip_report(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(MARKER))
