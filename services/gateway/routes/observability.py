"""``GET /metrics`` (this gateway's series and every service's, gathered over
METRICS_PING) and ``GET /health`` (503 while the bus is unreachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.gateway.metrics import render
from services.gateway.state import GatewayDep

router = APIRouter()


@router.get("/metrics")
async def prometheus(gw: GatewayDep) -> Response:
    s = gw.settings
    await gw.cluster.refresh(gw.bridge.nc, wait_s=s.gateway_scrape_wait_s, cache_s=s.gateway_scrape_cache_s)
    return Response(render(gw.metrics, gw.cluster), media_type=CONTENT_TYPE_LATEST)


@router.get("/health")
async def health(gw: GatewayDep) -> JSONResponse:
    up = gw.bridge.nc is not None
    body = {"status": "ok" if up else "degraded", "bus": up, "inflight": gw.bridge.inflight, "state": gw.runtime.state}
    return JSONResponse(body, status_code=200 if up else 503)
