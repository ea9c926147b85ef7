"""Probe inputs: calls near the ones the checks make, run on every candidate only to see
what each returns.

A small model's tests often probe too little (``fizzbuzz(1)`` ... ``fizzbuzz(10)`` never
reaches 15), and where it does probe far its expected values are often wrong. The
candidates themselves need no expected value to be compared: a probe is a check's call with
one literal argument changed (an int grown or set to 0, a string reversed or emptied, a
list reversed, shortened or emptied), and the ranking counts how often each candidate
returns what the others return (``ranking.behaviour``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

MAX_PROBES = 8
_MAX_INT = 50  # probes stay small: a slow but right program must not time out on one


def _variants(value: Any) -> Iterator[Any]:
    """Nearby values of one literal argument, most telling first."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        for n in (2 * value + 1, value + 1, 0, value + 2):
            if abs(n) <= _MAX_INT and n != value:
                yield n
    elif isinstance(value, float):
        yield from (value + 0.5, 0.0, -value)
    elif isinstance(value, str):
        yield from (s for s in (value[::-1], "", value.swapcase(), value + value[:1]) if s != value)
    elif isinstance(value, list | tuple):
        items = list(value)
        for seq in (items[::-1], items[:-1], items + items[:1], []):
            if seq != items:
                yield type(value)(seq)


def _calls(checks: list[str], names: set[str]) -> list[ast.Call]:
    """Direct calls of the named functions on the left of the checks' ``==``."""
    out = []
    for check in checks:
        try:
            node = ast.parse(check).body[0]
        except (SyntaxError, IndexError):
            continue
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        call = node.test.left
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in names:
            out.append(call)
    return out


def _probes_of(call: ast.Call) -> Iterator[str]:
    for i, arg in enumerate(call.args):
        try:
            value = ast.literal_eval(arg)
        except (ValueError, SyntaxError, TypeError):
            continue
        for v in _variants(value):
            args = [*call.args]
            args[i] = ast.parse(repr(v), mode="eval").body
            yield ast.unparse(ast.Call(func=call.func, args=args, keywords=call.keywords))


def probe_calls(checks: list[str], names: list[str], limit: int = MAX_PROBES) -> list[str]:
    """Up to ``limit`` new calls derived from the checks' calls of ``names``, taken round
    robin from the calls with the largest arguments first."""
    calls = sorted(_calls(checks, set(names)), key=lambda c: len(ast.unparse(c)), reverse=True)
    seen = {ast.unparse(c) for c in calls}
    streams = [_probes_of(c) for c in calls]
    out: list[str] = []
    while streams and len(out) < limit:
        for stream in list(streams):
            probe = next(stream, None)
            if probe is None:
                streams.remove(stream)
            elif probe not in seen:
                seen.add(probe)
                out.append(probe)
                if len(out) >= limit:
                    break
    return out
