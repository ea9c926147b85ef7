from __future__ import annotations

from services.router.classifier import SCHEMA, classify
from shared.contracts import TaskSubmit
from shared.llm.base import ScriptedEngine


async def test_classifier_maps_json_to_a_plan_and_constrains_output() -> None:
    engine = ScriptedEngine(['{"route": "reason_then_code"}'])
    plan = await classify(engine, TaskSubmit(text="Explain quicksort and implement it"))
    assert plan == ["reasoner", "coder"]
    assert engine.requests[0].json_schema == SCHEMA


async def test_unusable_answers_give_none() -> None:
    for reply in ("not json", '{"route": "dance"}', '{"other": 1}', "[]"):
        assert await classify(ScriptedEngine([reply]), TaskSubmit(text="hm")) is None
