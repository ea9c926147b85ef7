"""``GET /v1/models`` and ``/v1/models/{model_id}``: one model per agent of the registry
plus the auto-routed ``syndicate`` (a request becomes a task), and every model the agents
have loaded, by its roster name (a request is a plain generation on it; discovered from
the health replies, so several copies of an agent show as one model)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.gateway import http_errors as he
from services.gateway.openai_schema import MODEL_DESCRIPTIONS, MODELS
from services.gateway.state import Gateway, GatewayDep, authorize
from shared.errors import SyndicateError
from shared.generation.client import ServedModel

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


@router.get("/models")
async def list_models(gw: GatewayDep) -> dict[str, Any]:
    served = await served_models(gw)
    cards = [model_card(m, gw.started) for m in MODELS] + [served_card(m, gw.started) for m in served.values()]
    return {"object": "list", "data": cards}


@router.get("/models/{model_id}")
async def get_model(model_id: str, gw: GatewayDep) -> dict[str, Any]:
    if model_id in MODELS:
        return model_card(model_id, gw.started)
    served = await served_models(gw)
    if model_id not in served:
        served = await served_models(gw, fresh=True)
    if model_id not in served:
        raise he.unknown_model(model_id, list(MODELS) + list(served))
    return served_card(served[model_id], gw.started)


async def served_models(gw: Gateway, fresh: bool = False) -> dict[str, ServedModel]:
    """The served models; none while the bus is down (the agents are still listed)."""
    try:
        return await gw.models.models(fresh=fresh)
    except SyndicateError:
        return {}


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "syndicate",
        "description": MODEL_DESCRIPTIONS[model_id], "kind": "agent", "task_kind": MODELS[model_id],
    }


def served_card(model: ServedModel, created: int) -> dict[str, Any]:
    return {
        "id": model.name, "object": "model", "created": created, "owned_by": "syndicate",
        "description": f"the model {model.name}, served by {', '.join(model.services)}: plain generations, tools",
        "kind": "model", "served_by": model.services, "instances": len(model.instances), "slots": model.slots,
    }
