"""``EngineConfig``: how one ``LlamaEngine`` loads and runs its model (usually built from a
roster role, shared/llm/roster.py). Field meanings: docs/batching.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from shared.llm.roster import ResolvedRole


@dataclass
class EngineConfig:
    """How to load and run one model (usually built from a roster role)."""

    model_path: Path
    name: str
    cpus: list[int] | None = None  # None: the cpus this process may use now
    # None: one per cpu. With SMT the placement plan owns both siblings of a core but runs
    # one thread per physical core (passed as OMP_NUM_THREADS by the stack / compose / k8s).
    threads: int | None = None
    pin: bool = True
    n_ctx: int = 4096  # per request (each slot gets its own KV stream this long)
    n_batch: int = 512
    queue_limit: int = 4  # requests waiting besides the running ones
    slots: int = 1  # requests decoded together (continuous batching when > 1)
    prefill_chunk: int = 64  # prompt tokens per step while other sequences generate
    exact_batching: bool = False  # slots > 1: batched rows computed exactly as lone ones (slower)
    exact_max_rows: int = 7  # rows per call that still take the lone-decode kernels (this build)
    exact_min_chunk: int = 8  # prompt rows per call that take the whole-prompt kernels
    share_min_tokens: int = 16  # prompt tokens a copy of another slot's cache must save
    speculative: Literal["off", "prompt-lookup", "draft"] = "off"
    draft_model_path: Path | None = None  # speculative="draft": a model of the same tokenizer
    draft_tokens: int = 4  # most tokens the draft model writes per step
    draft_p_min: float = 0.5  # it stops where its top probability falls under this
    spec_num_pred_tokens: int = 10
    spec_max_ngram: int = 3
    spec_min_prompt_tokens: int = 0
    spec_max_pred_tokens: int = 32  # drafts grow up to this while fully accepted
    spec_exact_margin: float = 1.0  # logit margin a greedy choice needs on batch-made cache
    spec_adaptive: bool = True  # False: always verify a found draft (benchmarks)
    spec_loss_steps: float = 4.0  # a request that lost this many plain steps to speculation stops it
    seed: int = 0
    role: str = ""

    @classmethod
    def from_role(cls, role: ResolvedRole, cpus: list[int] | None = None) -> EngineConfig:
        c = role.config
        return cls(
            model_path=role.path, name=role.model_id, cpus=cpus, n_ctx=c.n_ctx, n_batch=c.n_batch,
            queue_limit=c.queue_limit, slots=c.slots, prefill_chunk=c.prefill_chunk,
            exact_batching=c.exact_batching, speculative=c.speculative, spec_num_pred_tokens=c.spec_num_pred_tokens,
            spec_max_pred_tokens=c.spec_max_pred_tokens, spec_min_prompt_tokens=c.spec_min_prompt_tokens,
            draft_model_path=role.draft.path if role.draft else None, draft_tokens=c.draft_tokens,
            draft_p_min=c.draft_p_min, role=role.name,
        )
