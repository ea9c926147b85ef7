"""Slots: one KV stream (``seq_id``) each, and the tokens whose keys and values it holds.

A new request takes the free slot whose cached tokens share the longest prefix with its
prompt (a system prompt, a repair loop's conversation) and only evaluates the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Slot:
    """One KV stream (``seq_id``) and the tokens whose keys/values it holds, in order."""

    seq_id: int
    kv: list[int] = field(default_factory=list)
    last_used: float = 0.0
    busy: bool = False


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def pick_slot(slots: list[Slot], prompt: list[int]) -> Slot | None:
    """The free slot whose cache shares most of ``prompt`` (the least recently used of
    equals); None when every slot is busy."""
    free = [s for s in slots if not s.busy]
    if not free:
        return None
    return max(free, key=lambda s: (common_prefix(s.kv, prompt), -s.last_used))


def reusable(cached: int, prompt_len: int, min_eval: int) -> int:
    """Cached tokens a prompt may reuse: all it shares, but at least ``min_eval`` tokens
    (>= 1 for logits) are evaluated again — the same kernels as a fresh evaluation, so a
    cached prefix never changes the output."""
    return max(0, min(cached, prompt_len - min_eval))
