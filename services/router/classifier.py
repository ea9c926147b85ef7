"""The router's small-model classifier for ``auto`` tasks the rules are unsure of. Its
output is constrained by a JSON schema, so it can only name a known plan."""

from __future__ import annotations

import json

from shared.contracts import TaskSubmit
from shared.errors import SyndicateError
from shared.llm.base import GenerationRequest, TextEngine

# Plans the classifier may pick, as agent sequences (each agent is one step).
PLANS: dict[str, list[str]] = {
    "code": ["coder"],
    "reason": ["reasoner"],
    "reason_then_code": ["reasoner", "coder"],
}
SCHEMA = {
    "type": "object",
    "properties": {"route": {"type": "string", "enum": list(PLANS)}},
    "required": ["route"],
}
SYSTEM = (
    "Classify the user's task. Answer JSON with one field `route`: "
    "`code` when the task asks to write, fix or change a program; "
    "`reason` when it asks a question or explanation; "
    "`reason_then_code` when it first needs an explanation or a design and then a program."
)


async def classify(engine: TextEngine, task: TaskSubmit, deadline: float | None = None) -> list[str] | None:
    """The plan for ``task`` or None when the model's answer is unusable."""
    req = GenerationRequest(
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": task.text[:2000]}],
        max_tokens=24, temperature=0.0, json_schema=SCHEMA, deadline=deadline, request_id=f"{task.task_id}.route",
    )
    try:
        out = await engine.generate(req)
        route = json.loads(out.text)["route"]
    except (SyndicateError, ValueError, KeyError, TypeError):
        return None
    return list(PLANS[route]) if route in PLANS else None
