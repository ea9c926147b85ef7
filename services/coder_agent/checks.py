"""Checks: test code cut into separate statements, run one by one inside the sandboxed
program, each outcome read back.

Model-written tests from a small model are often truncated (cut at max_tokens) or wrong
(``assert is_prime(9) == True``). So each statement runs on its own under a time limit,
its actual value is reported, incomplete statements are dropped, and tests that
contradict each other or the task's own checks (the same call asserted to two values)
are discarded before anything runs (``consistent_checks``). Which of the rest stand is
decided by the candidates' agreement (ranking.py).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

MARKER = "__SYNDICATE_CHECKS__"
MAX_CHECKS = 12

# Appended after the solution inside the sandbox: runs each check under a CPU-time limit
# (CPU, not wall time: a busy machine must not turn a right program into a timeout) and
# prints one JSON line. ``assert X == Y`` evaluates X once and compares, so the report
# carries X's value (in a canonical form: sets and dicts sorted, floats rounded, so equal
# results of different programs read the same); a probe (no source, no expected value)
# only reports the value. After a check times out the rest are not run (the program may
# be stuck in state the limit cannot undo), and each is reported as skipped.
_HARNESS = '''
def __syndicate_run_checks(prelude, checks, limit_s):
    import json as _json, signal as _signal, sys as _sys

    def _canon(v, depth=0):
        if depth > 4:
            return repr(v)
        if isinstance(v, dict):
            return "{" + ", ".join(sorted(_canon(k, depth + 1) + ": " + _canon(x, depth + 1) for k, x in v.items())) + "}"
        if isinstance(v, (set, frozenset)):
            return "{" + ", ".join(sorted(_canon(x, depth + 1) for x in v)) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(_canon(x, depth + 1) for x in v) + "]"
        if isinstance(v, tuple):
            return "(" + ", ".join(_canon(x, depth + 1) for x in v) + ("," if len(v) == 1 else "") + ")"
        if isinstance(v, float):
            return repr(round(v, 9))
        return repr(v)

    for src in prelude:  # a test file's imports and helpers: set-up, not checks
        try:
            exec(src, globals())
        except Exception:
            pass

    class _CheckTimeout(BaseException):
        pass

    def _alarm(signum, frame):
        raise _CheckTimeout()

    _signal.signal(_signal.SIGPROF, _alarm)
    out, stuck = [], False
    for i, (src, lhs, rhs) in enumerate(checks):
        rec = {"i": i, "ok": False, "actual": None, "error": ""}
        if stuck:
            rec["error"] = "skipped: an earlier check timed out"
            out.append(rec)
            continue
        _signal.setitimer(_signal.ITIMER_PROF, limit_s)
        try:
            if src is None:  # a probe
                rec["actual"] = _canon(eval(lhs, globals()))[:200]
                rec["ok"] = True
            elif lhs is not None:
                got = eval(lhs, globals())
                rec["actual"] = _canon(got)[:200]
                rec["ok"] = bool(got == eval(rhs, globals()))
                if not rec["ok"]:
                    rec["error"] = "AssertionError"
            else:
                exec(src, globals())
                rec["ok"] = True
        except AssertionError as e:
            rec["error"] = "AssertionError" + (": " + str(e) if str(e) else "")
        except _CheckTimeout:
            rec["error"] = "Timeout: the check used more than %s s of CPU" % limit_s
            stuck = True
        except BaseException as e:
            rec["error"] = type(e).__name__ + ": " + str(e)[:300]
        finally:
            _signal.setitimer(_signal.ITIMER_PROF, 0)
        out.append(rec)
    print("@MARKER@" + _json.dumps(out), file=_sys.stderr)
    _sys.exit(0 if all(r["ok"] for r, (src, _, _) in zip(out, checks) if src is not None) else 1)


__syndicate_run_checks(@PRELUDE@, @CHECKS@, @LIMIT@)
'''


@dataclass
class CheckOutcome:
    index: int
    ok: bool
    actual: str | None
    error: str

    @property
    def raised(self) -> bool:
        """The code under test raised or timed out (a traceback, not a wrong value)."""
        return not self.ok and not self.error.startswith(("AssertionError", "skipped"))


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


def model_checks(tests: str, limit: int = MAX_CHECKS) -> list[str]:
    """The assert statements of model-written tests: anything else (a helper, or the
    function itself written again) would run in the candidate's namespace and could make
    any program pass."""
    out = []
    for stmt in split_checks(tests, limit=200):
        try:
            body = ast.parse(stmt).body
        except SyntaxError:
            continue
        if len(body) == 1 and isinstance(body[0], ast.Assert):
            out.append(stmt)
    return out[:limit]


def asserted_value(stmt: str) -> tuple[str, str] | None:
    """For ``assert X == Y`` / ``assert X`` / ``assert not X`` / ``assert X is True``: the
    normalised source of X and of the value asserted for it."""
    try:
        body = ast.parse(stmt).body
    except SyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        return None
    test = body[0].test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq | ast.Is):
        left, right = test.left, test.comparators[0]
        if isinstance(left, ast.Constant) and not isinstance(right, ast.Constant):
            left, right = right, left  # assert 5 == f(2)
        return ast.unparse(left), _norm(right)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.unparse(test.operand), "bool:False"
    if isinstance(test, ast.Call):
        return ast.unparse(test), "bool:True"
    return None


def _norm(node: ast.expr) -> str:
    """A value's canonical text: literals by their value (``1.0`` and ``1`` stay apart)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node)
    return f"{type(value).__name__}:{value!r}"


def consistent_checks(model: list[str], trusted: list[str]) -> tuple[list[str], list[str]]:
    """``model`` checks split into (kept, discarded). Repeats of a trusted check are left
    out silently; a check is discarded when it asserts a call to a value the trusted
    checks or another model check assert differently (then every model check of that call
    goes: which one is right is unknown, and running them could only make right code look
    wrong)."""
    def values(checks: list[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for c in checks:
            av = asserted_value(c)
            if av:
                out.setdefault(av[0], set()).add(av[1])
        return out

    trusted_values, model_values = values(trusted), values(model)
    kept: list[str] = []
    discarded: list[str] = []
    for c in dict.fromkeys(model):
        av = asserted_value(c)
        if c in trusted or (av is not None and trusted_values.get(av[0]) == {av[1]}):
            continue  # the task already checks exactly this
        if av is not None and (len(model_values[av[0]]) > 1 or av[0] in trusted_values):
            discarded.append(c)
        else:
            kept.append(c)
    return kept, discarded


def _sides(check: str) -> tuple[str | None, str | None]:
    """For ``assert X == Y``: the sources of X and Y, evaluated separately by the harness."""
    try:
        node = ast.parse(check).body[0]
    except (SyntaxError, IndexError):
        return None, None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 \
            and isinstance(node.test.ops[0], ast.Eq):
        return ast.unparse(node.test.left), ast.unparse(node.test.comparators[0])
    return None, None


def harness(checks: list[str], limit_s: float = 2.0, prelude: list[str] | None = None,
            probes: list[str] | None = None) -> str:
    """Test code for the sandbox: runs ``prelude`` (set-up statements), then each check
    separately, then each probe call (reported after the checks), and reports every outcome."""
    table: list[tuple[str | None, str | None, str | None]] = [(c, *_sides(c)) for c in checks]
    table += [(None, p, None) for p in probes or []]
    return (_HARNESS.replace("@MARKER@", MARKER).replace("@PRELUDE@", repr(prelude or []))
            .replace("@CHECKS@", repr(table)).replace("@LIMIT@", repr(limit_s)))


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
    """Each failing check with what the code actually returned or raised."""
    lines = []
    for o in outcomes:
        if o.ok:
            continue
        got = f"the left side evaluated to {o.actual}" if o.actual is not None and not o.raised else o.error
        lines.append(f"{checks[o.index]}\n    -> failed: {got}")
    return "\n".join(lines)


def strip_report(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(MARKER))
