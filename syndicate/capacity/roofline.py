"""Expected generation rate of one request: bytes read per token ÷ the agent's bandwidth.

A generated token reads every weight matrix once — all tensors but the embedding table
(one row of it per token), which is read whole only when it doubles as the output matrix —
plus the KV cache of the context so far (taken at half of ``n_ctx``). Each weight type
streams at its own measured rate (``Bandwidth.gbps``), and a token has a fixed cost
besides (graph, sampling: ``overhead_s``).
"""

from __future__ import annotations

from syndicate.capacity.bandwidth import Bandwidth
from syndicate.capacity.shape import ModelShape


def bytes_per_token(shape: ModelShape, n_ctx: int) -> dict[str, int]:
    """Bytes read to generate one token, per weight type, and the KV cache as ``"KV"``."""
    by_type = dict(shape.bytes_by_type)
    if not shape.tied_output and shape.embedding_bytes and shape.embedding_type in by_type:
        by_type[shape.embedding_type] -= shape.embedding_bytes
    by_type["KV"] = n_ctx // 2 * shape.kv_bytes_per_token
    return {t: b for t, b in by_type.items() if b > 0}


def expected_tok_s(shape: ModelShape, n_ctx: int, bw: Bandwidth) -> float:
    """One request's generation rate on the roofline."""
    seconds = bw.overhead_s
    for t, b in bytes_per_token(shape, n_ctx).items():
        seconds += b / (bw.gbps(t if t != "KV" else "F16") * 1e9)
    return 1.0 / seconds if seconds > 0 else 0.0
