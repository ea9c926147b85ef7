"""A running request inside the worker (``Seq``) and the text it streams (``TextStream``)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.llm.queue import Ticket
    from shared.llm.slots import Slot
    from shared.llm.speculation import DraftPolicy, LookupPolicy


class TextStream:
    """Turns token bytes into text pieces: UTF-8 safe across tokens, cut at stop strings,
    holding back a tail that could still become a stop string."""

    def __init__(self, stops: list[str], push: Any) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._push = push
        self.text = ""
        self._sent = 0

    def feed(self, data: bytes) -> bool:
        """Add a token's bytes; True when a stop string ended the text."""
        self.text += self._decoder.decode(data)
        start = max(0, self._sent - self._hold)
        cut = min((i for s in self._stops if (i := self.text.find(s, start)) >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self._flush_to(len(self.text))
            return True
        self._flush_to(len(self.text) - self._hold)
        return False

    def close(self) -> None:
        self.text += self._decoder.decode(b"", final=True)
        self._flush_to(len(self.text))

    def _flush_to(self, end: int) -> None:
        if end > self._sent:
            self._push(self.text[self._sent : end])
            self._sent = end


@dataclass(eq=False)
class Seq:
    """A running request inside the worker: where it is and what it has produced."""

    ticket: Ticket
    slot: Slot
    prompt: list[int]
    pending: list[int]  # prompt tokens not evaluated yet
    sampler: Any
    stream: TextStream
    max_out: int
    spec: bool
    exact: bool  # speculation at temperature 0: choices on verify-batch cache need a margin
    greedy: bool  # temperature 0 without a grammar: argmax, no sampler chain
    hist: Any = None  # prompt + output tokens (numpy) for prompt lookup
    policy: LookupPolicy | None = None
    draft_policy: DraftPolicy | None = None
    draft_src: str = ""  # this step's draft: "lookup" or "model"
    out: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each output token was produced
    nxt: int = -1  # chosen, not yet fed to the model
    finish: str | None = None
    t_prompt: float | None = None
    drafted: int = 0
    accepted: int = 0
    resyncs: int = 0
    dirty: int | None = None  # first cache position computed in a speculative verify batch
    spec_net: float = 0.0  # seconds speculation has saved this request so far (< 0: lost)
    # admitted but waiting for another sequence to evaluate a prefix it shares (slots.py)
    wait: Seq | None = None
    share: int = 0  # prompt tokens it will copy from that sequence's slot
    # this step's part of the batch
    row: int = -1  # batch index of the first row with this sequence's logits
    draft: list[int] = field(default_factory=list)
    base: int = 0  # cache length before this step
