"""The task's own checks, the ones the coder trusts: its test files (``test_*.py``), every
``assert`` it states (at a line's start or inside one: ``For example: assert f(2) == 4``,
in prose or in a fenced block), doctest examples (``>>> f(2)`` / ``4``) and examples
written in prose (``f([1, 2]) == [2, 1]``, ``f("ab") -> 3``, ``f(7) should return True.``),
plus checks a caller adds (e.g. kept from earlier turns of a conversation).

A stated example is a check only when it can be one: an assert whose names are the
functions it calls, builtins and modules (``assert x > 0`` inside a function body the
task shows is no example), a prose example only when its whole right side is one Python
literal (``double([1, 3]) == 1 + 9 = 10`` or a recurrence ``tri(n) = 1 + n / 2`` is prose,
skipped rather than turned into a wrong check). The functions these checks call are the
names the answer must define (``required_names``): a renamed function fails them.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.coder_agent.checks import split_checks
from shared.contracts import FileIn

# Separators between a call and its value in prose examples, longest first. Strong ones
# make an example of any function; the weak ones ("is", "=", "gives") only of a function
# the task defines or names.
_SEPARATORS = re.compile(r"\s*(==>|=>|==|->|➞|→|should\s+return|returns|gives|is|=)\s*", re.IGNORECASE)
_STRONG = {"==>", "=>", "==", "->", "➞", "→", "returns"}
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_NAMED = re.compile(r"\b(?:function|method|def|write|implement|define|fix)\s+`?([A-Za-z_]\w*)`?\s*\(", re.IGNORECASE)
_CALL = re.compile(r"(?<![\w.>])([A-Za-z_]\w*)\s*\(")
_ASSERT = re.compile(r"(?<![\w.])assert\s")
_TRAILING = ".,;: \t"
_BUILTINS = frozenset(dir(builtins))
_MAX_LINE = 400  # an assert longer than this is not an example someone wrote in a sentence


def task_function_names(text: str) -> list[str]:
    """Functions the task defines (``def f(``) or names ("a function f(n) that ...")."""
    names = _DEF.findall(text) + _NAMED.findall(text)
    return list(dict.fromkeys(n for n in names if not n.startswith("_") and not keyword.iskeyword(n)))


def _imported(text: str) -> set[str]:
    """Module names a task's code imports (``import math`` lets a check say ``math.pi``)."""
    found = re.findall(r"^\s*import\s+([\w.]+)(?:\s+as\s+(\w+))?|^\s*from\s+\S+\s+import\s+(.+)$", text, re.MULTILINE)
    out: set[str] = set()
    for module, alias, names in found:
        if module:
            out.add(alias or module.split(".")[0])
        for part in names.split(","):
            bits = part.strip(" ()").split()
            if bits:
                out.add(bits[-1])
    return out


def called_names(source: str) -> list[str]:
    """Functions a check calls by name that Python does not define (its subject)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = (n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
    return list(dict.fromkeys(n for n in names if n not in _BUILTINS))


def usable(check: str, known: frozenset[str] | set[str] = frozenset()) -> bool:
    """A check someone could mean as an example: it calls a function of the task, and every
    other name it uses is a builtin, a module the task imports, or a name bound in the
    check itself (``assert all(f(x) for x in ...)``)."""
    try:
        tree = ast.parse(check)
    except SyntaxError:
        return False
    called = set(called_names(check))
    if not called:
        return False
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads <= called | bound | _BUILTINS | known


def _statement(rest: str, known: set[str]) -> str | None:
    """The longest prefix of ``rest`` (which starts with ``assert``) that is one usable
    assert statement: the sentence around it ("... == 4, as it should.") is cut off. An
    assert written with a prose arrow (``assert f(x) => y``) is read as ``f(x) == y``."""
    rest = rest[:_MAX_LINE]
    ends = [i for i in range(len(rest), 6, -1) if not rest[i - 1].isspace() and rest[i - 1] not in ",;:`"]
    for end in ends:
        text = rest[:end].strip()
        try:
            body = ast.parse(text).body
        except SyntaxError:
            continue
        if len(body) != 1 or not isinstance(body[0], ast.Assert) or not usable(text, known):
            continue
        sep = _SEPARATORS.match(rest[end:])
        if sep is not None and sep.group(1).lower() in _STRONG | {"=", "should return"}:
            value = _literal(rest[end + sep.end():])
            return f"{text} == {value}" if value is not None and body[0].msg is None else None
        return text
    return None


def assert_checks(text: str) -> list[str]:
    """Every usable ``assert`` the task states: at a line's start or in the middle of one
    ("For example: assert f(2) == 4"), in prose, in inline code or in a fenced block."""
    known = _imported(text)
    out: list[str] = []
    for line in text.splitlines():
        for m in _ASSERT.finditer(line):
            stmt = _statement(line[m.start():], known)
            if stmt is not None:
                out.append(stmt)
    return list(dict.fromkeys(out))


def doctest_checks(text: str, limit: int = 50) -> list[str]:
    """``>>> f(2)`` / ``4`` examples of a task (HumanEval-style docstrings) as assert checks."""
    checks: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return checks
    for ex in examples:
        source = ex.source.strip()
        # The closing quotes of a docstring right after an example belong to no output.
        want = "\n".join(ln for ln in ex.want.splitlines() if ln.strip() not in ('"""', "'''", "```")).strip()
        if not want or "\n" in source or "\n" in want:
            continue
        try:
            ast.parse(source, mode="eval")
            ast.parse(want, mode="eval")
        except SyntaxError:
            continue
        checks.append(f"assert {source} == {want}")
    return checks[:limit]


def _call_prefix(s: str) -> str | None:
    """The shortest prefix of ``s`` that is a complete call expression ``name(...)`` whose
    arguments are literals (``poly(x) = 0`` states no example)."""
    for end in (i + 1 for i, ch in enumerate(s) if ch == ")"):
        try:
            node = ast.parse(s[:end], mode="eval").body
        except SyntaxError:
            continue
        if not isinstance(node, ast.Call):
            return None
        try:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                ast.literal_eval(arg)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        return s[:end]
    return None


def _literal(s: str) -> str | None:
    """``s`` (minus trailing punctuation and backticks) when it is exactly one Python
    literal — the whole of it, or the whole of what comes before a ``;``."""
    for part in (s, s.split(";", 1)[0]):
        part = part.strip().removesuffix('"""').removesuffix("'''").strip("`").rstrip(_TRAILING).strip("`").strip()
        if not part:
            continue
        try:
            ast.literal_eval(part)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return part
    return None


def prose_checks(text: str, names: list[str] | None = None, limit: int = 50) -> list[str]:
    """Examples written in prose, one per line, as assert checks: ``f(x) -> y`` and the
    other strong separators for any function, the weak ones for the task's own functions."""
    names = task_function_names(text) if names is None else names
    own = set(names)
    checks: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith((">>>", "def ", "#")) or _ASSERT.search(line):
            continue  # doctests and asserts are read elsewhere; definitions are no examples
        for m in _CALL.finditer(line.replace("`", " ")):
            name = m.group(1)
            if name in _BUILTINS or keyword.iskeyword(name):
                continue
            flat = line.replace("`", " ")
            call = _call_prefix(flat[m.start():])
            if call is None:
                continue
            rest = flat[m.start() + len(call):]
            sep = _SEPARATORS.match(rest)
            if sep is None or (name not in own and sep.group(1).lower() not in _STRONG):
                continue
            value = _literal(rest[sep.end():])
            if value is not None:
                checks.append(f"assert {call} == {value}")
                break
    return list(dict.fromkeys(checks))[:limit]


def _renamed(check: str, names: set[str], to: str) -> str:
    """``check`` with its calls of ``names`` made calls of ``to``."""
    tree = ast.parse(check)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            node.func.id = to
    return ast.unparse(tree)


def text_checks(text: str) -> list[str]:
    """Every example the task's text states: asserts, doctests and prose examples. In a
    stub (code with one function), an example in its docstring that calls a name the task
    never names is an example of the stub (HumanEval/81 defines numerical_letter_grade and
    its docstring shows grade_equation(...) ==> ...)."""
    checks = list(dict.fromkeys(assert_checks(text) + doctest_checks(text) + prose_checks(text)))
    try:
        defs = [n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    except SyntaxError:
        return checks
    doc = ast.get_docstring(defs[0]) if len(defs) == 1 else None
    if doc:
        named, in_doc = set(task_function_names(text)), set(assert_checks(doc) + doctest_checks(doc) + prose_checks(doc))
        checks = [_renamed(c, odd, defs[0].name) if c in in_doc and (odd := set(called_names(c)) - named) else c
                  for c in checks]
    return list(dict.fromkeys(checks))


@dataclass
class TrustedChecks:
    """Checks from the task itself (then ``extra`` ones a caller added), the set-up
    statements its test files need, and the functions the answer must define."""

    checks: list[str] = field(default_factory=list)
    prelude: list[str] = field(default_factory=list)
    extra: int = 0  # the last `extra` checks are the caller's (e.g. from earlier turns)

    @property
    def stated(self) -> int:
        return len(self.checks) - self.extra

    def required_names(self) -> list[str]:
        """Functions the checks call that neither Python nor the test files' set-up define:
        the names the task asks for."""
        defined: set[str] = set()
        for src in self.prelude:
            defined |= set(defined_names(src))
        sources = self.checks + [s for s in self.prelude if s.lstrip().startswith(("def test", "async def test"))]
        return [n for n in dict.fromkeys(n for s in sources for n in called_names(s)) if n not in defined]


def defined_names(code: str) -> list[str]:
    """Top-level names a program binds: functions, classes, assignments and imports."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out += [(a.asname or a.name).split(".")[0] for a in node.names]
    return out


def is_test_file(f: FileIn) -> bool:
    return f.path.rsplit("/", 1)[-1].startswith("test_")


def trusted_checks(text: str, files: list[FileIn], extra: Sequence[str] = ()) -> TrustedChecks:
    """A test file's asserts and a call of each of its ``test*`` functions (its imports,
    helpers and assignments become set-up), the examples in the task's text, then
    ``extra`` checks (a caller's, e.g. kept from earlier turns)."""
    out = TrustedChecks()
    for f in filter(is_test_file, files):
        try:
            tree = ast.parse(f.content)
        except SyntaxError:
            out.checks += split_checks(f.content, limit=200)
            continue
        for node in tree.body:
            src = ast.get_source_segment(f.content, node) or ""
            (out.checks if isinstance(node, ast.Assert | ast.Expr) else out.prelude).append(src)
        out.checks += [f"{n.name}()" for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    stated = list(dict.fromkeys(out.checks + text_checks(text)))
    added = [c for c in dict.fromkeys(c.strip() for c in extra) if c and c not in stated]
    out.checks, out.extra = stated + added, len(added)
    return out
