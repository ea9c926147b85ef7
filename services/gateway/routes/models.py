"""``GET /v1/models`` and ``/v1/models/{model_id}``: one model per agent of the registry,
plus the auto-routed ``syndicate``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.gateway import http_errors as he
from services.gateway.openai_schema import MODEL_DESCRIPTIONS, MODELS
from services.gateway.state import GatewayDep, authorize

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


@router.get("/models")
async def list_models(gw: GatewayDep) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(m, gw.started) for m in MODELS]}


@router.get("/models/{model_id}")
async def get_model(model_id: str, gw: GatewayDep) -> dict[str, Any]:
    if model_id not in MODELS:
        raise he.unknown_model(model_id, list(MODELS))
    return model_card(model_id, gw.started)


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "syndicate",
        "description": MODEL_DESCRIPTIONS[model_id], "task_kind": MODELS[model_id],
    }
