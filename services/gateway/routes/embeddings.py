"""``POST /v1/embeddings``: the retriever's embedder over RETRIEVER_EMBED."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from services.gateway import http_errors as he
from services.gateway.openai_schema import EmbeddingRequest
from services.gateway.state import Gateway, GatewayDep, authorize, parse_body
from shared import subjects
from shared.bus import request as bus_request
from shared.contracts import EmbedReply, EmbedRequest
from shared.errors import BusError, SyndicateError

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


@router.post("/embeddings")
async def embeddings(req: Request, gw: GatewayDep) -> dict[str, Any]:
    body = await parse_body(req, EmbeddingRequest)
    reply = await embed_texts(gw, body.texts())
    if body.dimensions is not None and body.dimensions != reply.dim:
        raise he.APIError(400, f"the embedder {reply.model} has {reply.dim} dimensions, not {body.dimensions}",
                          type="invalid_request_error", code="invalid_dimensions", param="dimensions")
    data = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
        for i, v in enumerate(reply.vectors)
    ]
    # The retriever does not report token counts: usage stays 0 rather than a guess.
    return {"object": "list", "data": data, "model": reply.model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}


async def embed_texts(gw: Gateway, texts: list[str]) -> EmbedReply:
    """The retriever's vectors of ``texts`` (the OpenAI and Ollama routes share it); its
    failures as API errors (503 when no retriever runs)."""
    if gw.bridge.nc is None:
        raise he.bus_unavailable()
    t0 = time.perf_counter()
    try:
        reply = await bus_request(
            gw.broker, subjects.RETRIEVER_EMBED, EmbedRequest(texts=texts), EmbedReply,
            timeout=gw.settings.gateway_embed_timeout_s,
        )
    except BusError as exc:
        gw.metrics.embed_seconds.labels("error").observe(time.perf_counter() - t0)
        if "no responders" in exc.message.lower():
            raise he.APIError(
                503, f"no retriever is running: nothing answers {subjects.RETRIEVER_EMBED}",
                type="service_unavailable_error", code="retriever_unavailable",
            ) from exc
        raise he.from_exception(exc, gw.retry_after_s) from exc
    except (SyndicateError, ValidationError) as exc:
        gw.metrics.embed_seconds.labels("error").observe(time.perf_counter() - t0)
        raise he.from_exception(exc, gw.retry_after_s) from exc
    gw.metrics.embed_seconds.labels("ok").observe(time.perf_counter() - t0)
    return reply


def encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (the OpenAI SDK's default)."""
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
