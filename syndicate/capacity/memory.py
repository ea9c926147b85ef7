"""How much memory one agent process takes: predicted from its model's shape and its role
settings, part by part, the way llama.cpp allocates it (measured on this build, see
docs/capacity.md):

- weights   the whole file, memory-mapped; every page is touched while loading, so all of
            it is resident (and shared with any other process mapping the same file).
- repacked  tensors of the types llama.cpp's CPU backend re-lays for its gemm kernels
            (Q4_0, Q4_K, IQ4_NL, Q2_K on x86) are copied into anonymous memory as well; off
            when ``exact_batching`` turns the repacked buffers off.
- kv        slots x n_ctx x layers x KV heads x (K + V head dims) x 2 bytes (f16 cache).
- compute   what the compute buffers really touch: one prompt batch's activations (n_batch
            rows of the widest layer tensors and the attention scores) plus one logits row
            per slot. llama.cpp *reserves* n_batch rows of logits (n_batch x n_vocab x 4
            bytes: 300 MiB for Qwen's vocabulary) but only touches the rows it outputs, so
            reservation is reported apart and not counted.
- runtime   the Python process around the model (interpreter, nats, pydantic, numpy,
            llama.cpp's code), calibrated on `make run`'s agents.
"""

from __future__ import annotations

from pydantic import BaseModel

from syndicate.capacity.shape import ModelShape

# The process around the model (interpreter, libraries, the service's own state): what
# `make run`'s three agents held besides their model parts, 78-142 MB on this machine.
RUNTIME_BYTES = 105 * 10**6
# Share of a file's bytes in repacked types, by quant type, for rosters that give a size
# and no file yet (from Qwen2.5/Llama-3 GGUFs: Q4_K_M keeps attn_v/ffn_down of half the
# layers and the output in Q6_K).
REPACKED_SHARE = {"Q4_0": 0.97, "IQ4_NL": 0.97, "Q4_K_S": 0.95, "Q4_K_M": 0.70, "Q2_K": 0.45}


class RoleLoad(BaseModel):
    """The role settings that change memory (a roster role's fields)."""

    slots: int = 1
    n_ctx: int = 4096
    n_batch: int = 512
    repack: bool = True  # False with exact_batching (no extra buffer types)


class AgentMemory(BaseModel):
    """Predicted resident memory of one agent, in bytes."""

    weights: int
    repacked: int
    kv: int
    compute: int
    runtime: int
    draft: int = 0  # a speculative draft model's weights and cache
    compute_reserved: int = 0  # what llama.cpp reserves for the worst-case batch (not counted)

    @property
    def total(self) -> int:
        return self.weights + self.repacked + self.kv + self.compute + self.runtime + self.draft

    @property
    def private(self) -> int:
        """What no other process shares (all but the mapped weight file)."""
        return self.total - self.weights


def kv_bytes(shape: ModelShape, load: RoleLoad) -> int:
    return load.slots * load.n_ctx * shape.kv_bytes_per_token


def compute_bytes(shape: ModelShape, load: RoleLoad) -> tuple[int, int]:
    """(touched, reserved) compute-buffer bytes. Touched: the activations of one prompt
    batch (input, attention output, gate/up/down of the FFN, scores over the batch) and one
    logits row per slot; reserved adds logits for every row of the batch."""
    rows = min(load.n_batch, load.n_ctx)
    acts = 4 * rows * (4 * shape.n_embd + 3 * shape.n_ff + shape.n_head * rows)
    touched = acts + 4 * shape.n_vocab * load.slots
    return touched, acts + 4 * shape.n_vocab * rows


def repacked_estimate(shape: ModelShape, quant: str | None) -> int:
    if shape.repack_bytes is not None:
        return shape.repack_bytes
    return int(REPACKED_SHARE.get((quant or "").upper(), 0.0) * (shape.file_bytes - shape.embedding_bytes))


def agent_memory(shape: ModelShape, load: RoleLoad, *, quant: str | None = None,
                 draft: ModelShape | None = None) -> AgentMemory:
    """The memory parts of one agent (module docstring)."""
    touched, reserved = compute_bytes(shape, load)
    draft_bytes = 0
    if draft is not None:  # one sequence of the draft model next to the main one
        draft_bytes = draft.file_bytes + load.n_ctx * draft.kv_bytes_per_token + compute_bytes(draft, load)[0]
    return AgentMemory(
        weights=shape.file_bytes, repacked=repacked_estimate(shape, quant) if load.repack else 0,
        kv=kv_bytes(shape, load), compute=touched, runtime=RUNTIME_BYTES, draft=draft_bytes,
        compute_reserved=reserved,
    )
