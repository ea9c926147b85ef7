"""What goes into a step: prompt chunks of joining requests next to one token of every
generating sequence, and (exact batching) how a step splits into llama_decode calls.

- **Chunked prompt processing.** While other sequences are generating, a step carries at
  most ``prefill_chunk`` prompt tokens (oldest joining request first; up to 7 more rather
  than leave a shorter tail) next to one token of every running sequence, so a long
  prompt delays running generations by a bounded amount per token instead of stalling
  them for the whole prompt; when nothing else is generating, a prompt is evaluated
  ``n_batch`` tokens per step.
- **Exact batching.** This build picks its matmul kernels by the number of rows in a
  call: up to ``exact_max_rows`` (7) rows take the small-batch path a lone decode step
  takes, from ``exact_min_chunk`` (8) rows the large-batch path a whole prompt takes, and
  the two round differently (|logit diff| ~0.36 on Qwen 0.5B). So generating sequences
  are decoded in groups of at most ``exact_max_rows`` one-token rows, and each prompt
  chunk (never shorter than ``exact_min_chunk``) in a call of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.llm.config import EngineConfig
    from shared.llm.sequence import Seq

Chunks = list[tuple["Seq", int]]  # (joining sequence, prompt tokens it evaluates now)
Call = tuple[list["Seq"], Chunks]  # one llama_decode: generating sequences and prompt chunks


def prompt_chunks(config: EngineConfig, active: list[Seq], decoding: list[Seq], *, exact: bool) -> Chunks:
    """The prompt tokens joining sequences evaluate this step (admission order: the
    oldest joiner first), within what the batch has left after the generating rows."""
    rows = sum(1 + len(s.draft) for s in decoding)
    budget = config.n_batch - (0 if exact else rows)
    if decoding:  # others are generating: bounded prompt work per step
        budget = min(budget, max(config.prefill_chunk, config.exact_min_chunk))
    chunks: Chunks = []
    for seq in active:
        if seq.pending and budget > 0 and (k := chunk_len(config, len(seq.pending), budget, exact=exact)):
            chunks.append((seq, k))
            budget -= k
    return chunks


def chunk_len(config: EngineConfig, pending: int, budget: int, *, exact: bool) -> int:
    """Prompt tokens to evaluate now: at most ``budget``, but (exact batching) never
    leaving a tail shorter than ``exact_min_chunk`` (it would run on the small-batch
    kernels while the same tokens of a prompt evaluated whole run on the large-batch ones)."""
    take = min(pending, budget)
    if not exact:
        return take
    least = config.exact_min_chunk
    if take < pending and take < least:
        return 0  # too little budget left this step: wait for the next
    if 0 < pending - take < least:
        take = pending if pending <= config.n_batch else pending - least
    return take


def exact_calls(config: EngineConfig, decoding: list[Seq], chunks: Chunks) -> list[Call]:
    """Split a step into llama_decode calls that compute every row as it is computed
    alone (module docstring): a speculative verify batch alone, plain generating rows in
    even groups of at most ``exact_max_rows``, each prompt chunk in a call of its own."""
    calls: list[Call] = []
    plain = [s for s in decoding if not s.draft]
    calls += [([s], []) for s in decoding if s.draft]
    if plain:
        n_groups = -(-len(plain) // config.exact_max_rows)
        size = -(-len(plain) // n_groups)  # even groups: 8 -> 4 + 4
        calls += [(plain[i : i + size], []) for i in range(0, len(plain), size)]
    calls += [([], [c]) for c in chunks]
    return calls
