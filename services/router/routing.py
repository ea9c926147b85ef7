"""Which agents a task goes to, decided by rules (a JSON-schema classifier model refines
``auto`` tasks when the router has one)."""

from __future__ import annotations

import re

from shared import registry
from shared.contracts import TaskSubmit

_CODE = re.compile(
    r"\b(write|implement|code|function|def|class|script|program|refactor|fix|bug|debug|"
    r"unit tests?|python|algorithm|regex|parse|sort|compile|return[s]?)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(r"^\s*(what|why|how|who|when|where|which|explain|describe|summari[sz]e|is|are|does|do|can)\b", re.IGNORECASE)


def rule_route(task: TaskSubmit) -> list[str] | None:
    """The route when rules are sure of it, else None (leave it to the classifier)."""
    if task.agent:
        return [task.agent]
    if (agent := registry.agent_for_kind(task.kind)) is not None:
        return [agent]
    if task.files:
        return ["coder"]
    code_hits = len(_CODE.findall(task.text))
    question = bool(_QUESTION.match(task.text))
    if task.collection and not code_hits:
        return ["reasoner"]
    if code_hits >= 2 and not question:
        return ["coder"]
    if code_hits == 0:
        return ["reasoner"]
    return None


def fallback_route(task: TaskSubmit) -> list[str]:
    """Rules' best guess when no classifier answers."""
    return ["coder"] if _CODE.search(task.text) and not _QUESTION.match(task.text) else ["reasoner"]
