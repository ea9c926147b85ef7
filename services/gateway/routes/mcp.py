"""``/mcp``: the MCP server (mcp_tools.py) over streamable HTTP, behind the API key.

The SDK's session manager runs for the app's lifetime (this router's lifespan); clients
of the 2026 protocol send self-contained requests (any replica serves them), older ones
keep a session (``Mcp-Session-Id``) on the replica that opened it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway import http_errors as he
from services.gateway.mcp_tools import PATH, build_mcp
from services.gateway.state import key_accepted


@contextlib.asynccontextmanager
async def serve_mcp(app: FastAPI) -> AsyncIterator[None]:
    gw = app.state.gateway
    mcp = build_mcp(gw)
    # host: the SDK guards a loopback gateway against DNS rebinding (Host/Origin checks).
    app.state.mcp_http = mcp.streamable_http_app(streamable_http_path=PATH, host=gw.settings.gateway_host)
    async with mcp.session_manager.run():
        yield


class MCPEndpoint:
    """The SDK's ASGI app, for callers with the API key; 401 for the others. (An ASGI
    object, not a function: Starlette would call a function as a request handler.)"""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = scope["app"]
        if not key_accepted(app.state.gateway.settings, Headers(scope=scope).get("authorization", "")):
            err = he.unauthorized()
            await JSONResponse(err.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        await app.state.mcp_http(scope, receive, send)


router = APIRouter(lifespan=serve_mcp)
router.routes.append(Route(PATH, endpoint=MCPEndpoint(), methods=["GET", "POST", "DELETE"]))
