"""The gateway's HTTP endpoints, one module per family, each an ``APIRouter``.

Adding a family (say MCP or A2A): a module here with ``router = APIRouter(...)`` whose
handlers take ``GatewayDep`` (services/gateway/state.py) for the broker, task bridge and
metrics, and one entry in ``ROUTERS``. Routers under ``/v1`` depend on ``authorize``.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.routes import completions, embeddings, models, observability

ROUTERS: tuple[APIRouter, ...] = (models.router, completions.router, embeddings.router, observability.router)
