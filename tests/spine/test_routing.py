from __future__ import annotations

import pytest

from services.router.routing import fallback_route, rule_route
from shared.contracts import FileIn, TaskSubmit


@pytest.mark.parametrize(
    ("text", "kind", "route"),
    [
        ("Write a Python function that reverses a list", "auto", ["coder"]),
        ("What is the capital of France?", "auto", ["reasoner"]),
        ("anything at all", "code", ["coder"]),
        ("Write a function", "reason", ["reasoner"]),
        ("Summarize the liquidation rules", "auto", ["reasoner"]),
    ],
)
def test_rule_route(text: str, kind: str, route: list[str]) -> None:
    assert rule_route(TaskSubmit(text=text, kind=kind)) == route  # type: ignore[arg-type]


def test_files_go_to_the_coder() -> None:
    task = TaskSubmit(text="make it faster", files=[FileIn(path="a.py", content="x=1")])
    assert rule_route(task) == ["coder"]


def test_ambiguous_is_left_to_the_classifier_and_fallback_decides() -> None:
    task = TaskSubmit(text="How do I sort a list in python?")
    assert rule_route(task) is None
    assert fallback_route(task) == ["reasoner"]
