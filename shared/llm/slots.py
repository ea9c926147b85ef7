"""Slots and the prefix cache: which KV stream a request runs in, and which of its
prompt tokens it takes from a cache instead of evaluating them.

Every slot is one KV stream (``seq_id``) holding the tokens of its last request in order;
it keeps them after the request ends. A new request is placed (``place``) where it
evaluates the fewest prompt tokens:

- **in place**: the free slot whose cache shares most of the prompt keeps that prefix;
- **copied**: when another slot — busy or free — holds a longer prefix (another sample of
  the same prompt, a system prompt, a repair's conversation, a thread's history), its
  stream is copied into the least recently used free slot (``llama_memory_seq_cp``; with
  one stream per slot llama.cpp copies the whole stream buffer at the next decode, a
  memcpy of ``n_ctx`` cells, so a copy must save at least ``share_min_tokens``) and cut
  to the shared prefix;
- **after waiting**: when that prefix is still being evaluated by a request that is
  prefilling it, the new request waits for it instead of computing it a second time.

A prompt identical to one a slot holds *with its last logits* (each slot keeps the logits
of the last prompt token it evaluated) evaluates nothing: its first token is sampled from
those logits. Otherwise at least ``exact_min_chunk`` tokens (>= 1 for logits) are
evaluated again — the kernels of a fresh evaluation. With exact batching only tokens that
were evaluated as prompt rows are reused (a generated token's cache comes from the
one-row kernels and differs from a prompt evaluation of the same token), so sharing never
changes a temperature-0 output there; on the fast path it may, as batching itself may.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.llm.sequence import Seq


@dataclass(eq=False)
class Slot:
    """One KV stream (``seq_id``) and the tokens whose keys/values it holds, in order."""

    seq_id: int
    kv: list[int] = field(default_factory=list)
    last_used: float = 0.0
    busy: bool = False
    prompt_end: int = 0  # leading kv tokens evaluated as prompt rows (not generated)
    logits: Any = None  # logits after the first ``logits_at`` tokens (a prompt's last), a copy
    logits_at: int = 0

    def cut(self, keep: int) -> None:
        """Forget cached tokens from ``keep`` on (after llama.cpp removed them)."""
        del self.kv[keep:]
        self.prompt_end = min(self.prompt_end, keep)
        if keep < self.logits_at:
            self.logits, self.logits_at = None, 0

    def prompt_done(self, logits: Any) -> None:
        """The cache now holds a whole prompt, and these are the logits after it."""
        self.prompt_end = len(self.kv)
        self.logits, self.logits_at = logits, len(self.kv)


@dataclass
class Placement:
    """Where a new request runs and what it takes from caches."""

    slot: Slot  # a free slot: the request's KV stream
    share: int  # prompt tokens it takes from a cache (== prompt length: nothing to evaluate)
    source: Slot | None = None  # copy them from this slot's stream (None: in place)
    wait: Seq | None = None  # the sequence still evaluating them: start when it has


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def reusable(cached: int, prompt_len: int, min_eval: int) -> int:
    """Cached tokens a prompt may reuse without saved logits: all it shares, but at least
    ``min_eval`` tokens (>= 1 for logits) are evaluated again."""
    return max(0, min(cached, prompt_len - min_eval))


def usable(slot: Slot, prompt: list[int], min_eval: int, exact: bool) -> int:
    """Prompt tokens ``prompt`` can take from what ``slot`` holds now."""
    n = common_prefix(slot.kv, prompt)
    if n == len(prompt) and slot.logits is not None and slot.logits_at == n:
        return n  # the whole prompt and the logits after it
    if exact:
        n = min(n, slot.prompt_end)
    return reusable(n, len(prompt), min_eval)


def place(slots: list[Slot], owners: dict[Slot, Seq], prompt: list[int], *, min_eval: int,
          min_copy: int, exact: bool) -> Placement | None:
    """Where ``prompt`` evaluates the fewest tokens (module docstring); None when no slot
    is free. ``owners`` maps the slots of running sequences to them."""
    free = [s for s in slots if not s.busy]
    if not free:
        return None
    home = max(free, key=lambda s: (usable(s, prompt, min_eval, exact), -s.last_used))
    in_place = Placement(home, usable(home, prompt, min_eval, exact))
    best: Placement | None = None
    for slot in slots:
        owner = owners.get(slot)
        if owner is not None and owner.pending:  # still evaluating its prompt: what it will hold
            n = common_prefix(owner.prompt, prompt)
            n = n if n == len(prompt) == len(owner.prompt) else reusable(n, len(prompt), min_eval)
            wait = owner if len(slot.kv) < n else None
        elif slot.busy and owner is None:
            continue  # a slot waiting for a copy of its own
        else:
            n, wait = usable(slot, prompt, min_eval, exact), None
        if best is None or (n, wait is None) > (best.share, best.wait is None):
            best = Placement(home, n, slot, wait)
    if best is None or best.share < in_place.share + min_copy:
        return in_place
    best.slot = min(free, key=lambda s: s.last_used)  # a copy overwrites the least recently used
    return best
