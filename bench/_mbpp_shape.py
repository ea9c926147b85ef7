"""The MBPP-shaped suite of bench/coder_quality.py (``--suite mbpp-shape``): tasks as a
description and one line ``For example: assert f(x) == y``, with no stub — the shape of
MBPP and of what users type, where the function's name comes only from the example.

- HumanEval rewritten: the entry function's docstring up to its first example, then its
  first example (a doctest or prose example of the entry point) as the assert line. A
  problem whose prompt defines helper functions too, or has no such example, is left out.
  Judged by HumanEval's hidden test, as the HumanEval suite is.
- Tasks written here (bench/data/written_tasks.json): a description, one example, and
  hidden asserts a right answer passes.

``python bench/_mbpp_shape.py`` prints the suite's tasks (``--id`` one of them).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.coder_agent.trusted import called_names, doctest_checks, prose_checks  # noqa: E402

WRITTEN = Path(__file__).resolve().parent / "data" / "written_tasks.json"
# Examples HumanEval's docstrings state that its own canonical solutions fail (checked by
# running each stated example against them): never the one example of a shaped task.
WRONG_EXAMPLES = frozenset({"assert tri(1) == 3", "assert tri(4) == 3", "assert median([-10, 4, 6, 1000, 10, 20]) == 15.0",
                            'assert bf("Earth", "Mercury") == ("Venus")'})
# A docstring line where the examples start.
_EXAMPLES = re.compile(r"^\s*(>>>|(for )?examples?\b|e\.g\.|input\s*:)", re.IGNORECASE)
_RESUME = re.compile(r"^\s*(variables?|constraints?|notes?)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class ShapedTask:
    id: str
    text: str  # what the agent and the model see
    entry_point: str
    example: str  # the one stated check
    hidden: str  # test code appended to an answer to judge it (exit 0: right)


def _description(doc: str, entry: str) -> str:
    """The docstring's prose without its examples: up to the first example section (lines
    that are examples left out), and sections after it that define the inputs
    ("Variables:", "Constraints:", "Note:")."""
    out, skipping = [], False
    for line in doc.splitlines():
        if _RESUME.match(line):
            skipping = False
        elif _EXAMPLES.match(line):
            skipping = True
        if not skipping and not prose_checks(line, [entry]):
            out.append(line.strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def from_humaneval(item) -> ShapedTask | None:  # type: ignore[no-untyped-def]
    """A HumanEval problem in MBPP's shape, or None when it cannot take that shape."""
    try:
        tree = ast.parse(item.prompt)
    except SyntaxError:
        return None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(defs) != 1 or defs[0].name != item.entry_point:
        return None  # helpers the answer would need to see
    doc = ast.get_docstring(defs[0]) or ""
    description = _description(doc, item.entry_point)
    examples = [c for c in doctest_checks(item.prompt) + prose_checks(item.prompt, [item.entry_point])
                if item.entry_point in called_names(c) and c not in WRONG_EXAMPLES]
    if not description or not examples:
        return None
    hidden = f"{item.test}\n\ncheck({item.entry_point})\n"
    return ShapedTask(item.id.replace("HumanEval/", "he/"), f"{description}\nFor example: {examples[0]}",
                      item.entry_point, examples[0], hidden)


def written() -> list[ShapedTask]:
    out = []
    for t in json.loads(WRITTEN.read_text())["tasks"]:
        entry = called_names(t["example"])[0]
        out.append(ShapedTask(t["id"], f"{t['text']}\nFor example: {t['example']}", entry, t["example"],
                              "\n".join([t["example"], *t["tests"]]) + "\n"))
    return out


def suite(humaneval_items: list) -> list[ShapedTask]:  # type: ignore[type-arg]
    """The written tasks, then every HumanEval problem that takes the shape."""
    return written() + [t for t in map(from_humaneval, humaneval_items) if t is not None]


def main() -> None:
    from shared.evaluation.settings import EvaluatorSettings
    from shared.evaluation.suites import load_suite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", default=None)
    args = ap.parse_args()
    items = load_suite("humaneval", EvaluatorSettings().eval_data_dir).items
    tasks = suite(list(items))
    for t in tasks:
        if args.id is None or t.id == args.id:
            print(f"--- {t.id}\n{t.text}\n")
    print(f"{len(tasks)} tasks ({len(written())} written, {len(tasks) - len(written())} of {len(items)} HumanEval)")


if __name__ == "__main__":
    main()
