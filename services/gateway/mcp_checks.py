"""Two middlewares of the gateway's MCP server: a call over HTTP joins the caller's trace,
and a call the tool's input schema refuses is a JSON-RPC invalid-params error.

The SDK answers unknown tools and arguments that fail validation with a tool result
flagged ``isError``; here a malformed call is the caller's protocol mistake and gets
``-32602`` naming the field, before any work starts (the tools' own contract checks
raise the same error, ``invalid_params``).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from opentelemetry import context as otel_context
from opentelemetry.propagate import extract
from pydantic import ValidationError

MAX_REASON = 300  # characters of one complaint: schema messages quote the caller's value


def invalid_params(reason: ValidationError | str) -> MCPError:
    """The protocol error for arguments the contracts refuse."""
    if isinstance(reason, ValidationError):
        reason = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"[:MAX_REASON] for e in reason.errors()
        )
    return MCPError(INVALID_PARAMS, f"invalid arguments: {reason}")


async def join_http_trace(ctx: Any, call_next: Any) -> Any:
    """A message over HTTP whose ``_meta`` carries no ``traceparent`` joins the one in the
    HTTP headers (the SDK's own span reads only ``_meta``)."""
    headers = getattr(ctx.request, "headers", None)
    if headers is None or "traceparent" in (ctx.meta or {}) or "traceparent" not in headers:
        return await call_next(ctx)
    token = otel_context.attach(extract(dict(headers)))
    try:
        return await call_next(ctx)
    finally:
        otel_context.detach(token)


class ArgumentCheck:
    """``tools/call`` of an unknown tool, or with arguments its input schema refuses:
    INVALID_PARAMS with every complaint."""

    def __init__(self, mcp: MCPServer) -> None:
        self.mcp = mcp
        self._validators: dict[str, Draft202012Validator] | None = None

    async def validators(self) -> dict[str, Draft202012Validator]:
        if self._validators is None:  # tools are fixed once the server is built
            self._validators = {t.name: Draft202012Validator(t.input_schema) for t in await self.mcp.list_tools()}
        return self._validators

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params or {}
        validators = await self.validators()
        name = params.get("name")
        if name not in validators:
            raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}; the tools are {', '.join(validators)}")
        arguments = params.get("arguments") or {}
        complaints = [
            f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}"[:MAX_REASON]
            for e in sorted(validators[name].iter_errors(arguments), key=lambda e: list(map(str, e.path)))
        ]
        if complaints:
            raise invalid_params("; ".join(complaints))
        return await call_next(ctx)
