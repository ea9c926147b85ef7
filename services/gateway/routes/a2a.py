"""A2A (protocol 1.0, JSON-RPC binding): the Agent Cards (a2a_cards.py) and one
JSON-RPC endpoint per card, served by ``a2a-sdk``'s dispatcher over our handler.

Cards are public (they say how to authenticate); the JSON-RPC endpoints need the API key
when one is set. A caller's ``traceparent`` is attached before the SDK's server span
starts, so that span, the gateway's task span and every hop after it are one trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import context as otel_context

from services.gateway import http_errors as he
from services.gateway.a2a_cards import RPC_PATH, agent_card, card_path
from services.gateway.a2a_handler import SyndicateHandler, endpoints
from services.gateway.state import GatewayDep, key_accepted, trace_parent


@contextlib.asynccontextmanager
async def serve_a2a(app: FastAPI) -> AsyncIterator[None]:
    gw = app.state.gateway
    app.state.a2a = {agent: JsonRpcDispatcher(SyndicateHandler(gw, agent)) for agent in endpoints()}
    yield


router = APIRouter(lifespan=serve_a2a)


def card_response(agent: str | None, request: Request, gw: GatewayDep) -> Response:
    if agent is not None and agent not in endpoints():
        return JSONResponse({"error": f"no agent {agent!r}; the agents are {', '.join(filter(None, endpoints()))}"},
                            status_code=404)
    base = gw.settings.gateway_public_url or str(request.base_url)
    card = agent_card(agent, base, secured=bool(gw.settings.gateway_api_key))
    return JSONResponse(agent_card_to_dict(card))


@router.get(card_path(None))
async def syndicate_card(request: Request, gw: GatewayDep) -> Response:
    return card_response(None, request, gw)


@router.get(card_path("{agent}"))
async def agent_card_route(agent: str, request: Request, gw: GatewayDep) -> Response:
    return card_response(agent, request, gw)


async def dispatch(agent: str | None, request: Request, gw: GatewayDep) -> Response:
    dispatchers = request.app.state.a2a
    if agent not in dispatchers:
        return JSONResponse({"error": f"no agent {agent!r}"}, status_code=404)
    if not key_accepted(gw.settings, request.headers.get("authorization", "")):
        return JSONResponse(he.unauthorized().body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
    token = otel_context.attach(trace_parent(request))
    try:
        return await dispatchers[agent].handle_requests(request)
    finally:
        otel_context.detach(token)


@router.post(RPC_PATH)
async def syndicate_rpc(request: Request, gw: GatewayDep) -> Response:
    return await dispatch(None, request, gw)


@router.post(RPC_PATH + "/{agent}")
async def agent_rpc(agent: str, request: Request, gw: GatewayDep) -> Response:
    return await dispatch(agent, request, gw)
