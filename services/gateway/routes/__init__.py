"""The gateway's HTTP endpoints, one module per family, each an ``APIRouter``.

Adding a family (as mcp.py and a2a.py were): a module here with ``router = APIRouter(...)`` whose
handlers take ``GatewayDep`` (services/gateway/state.py) for the broker, task bridge and
metrics, and one entry in ``ROUTERS``. Routers under ``/v1`` depend on ``authorize``.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.routes import (
    a2a,
    completions,
    embeddings,
    mcp,
    models,
    observability,
    ollama,
    tasks,
    ui,
    ui_stream,
)

ROUTERS: tuple[APIRouter, ...] = (
    models.router, completions.router, embeddings.router, observability.router, mcp.router, a2a.router, tasks.router,
    ollama.router, ui.router, ui_stream.router,
)
