"""Choosing tokens: a sampler chain per request (penalties, grammar, top-k / top-p /
min-p, temperature), and the greedy shortcut.

At temperature 0 without a grammar or penalties the next token is the argmax of the
logits row (first maximum, as llama.cpp's greedy sampler), read in place: no candidate
array of the whole vocabulary is built per token. ``json_schema`` compiles to a llama.cpp
grammar, as does a raw GBNF ``grammar`` (it wins), cached per text (agents and tool
calls reuse a few); each sequence gets its own grammar state.
"""

from __future__ import annotations

import ctypes
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.llm.base import GenerationRequest
    from shared.llm.context import ModelContext
    from shared.llm.sequence import Seq

_TOKEN_DATA = [("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]  # struct llama_token_data


PENALTY_LAST_N = 64  # tokens the repeat / presence / frequency penalties look back over (llama.cpp's default)


class Sampling:
    """Sampler chains from requests, and the choice of a sequence's next token."""

    def __init__(self, llama: ModelContext, seed: int) -> None:
        self._llama = llama
        self._seed = seed
        self._grammars: dict[str, Any] = {}

    def chain(self, req: GenerationRequest) -> Any:
        """A new llama.cpp sampler chain for ``req`` (one per sequence: it holds state)."""
        s = self._llama.internals.LlamaSampler()
        if penalized(req):
            s.add_penalties(self._llama.n_vocab, PENALTY_LAST_N, req.repeat_penalty or 1.0, req.frequency_penalty or 0.0,
                            req.presence_penalty or 0.0)
        grammar = self._grammar(req)
        if grammar is not None:
            s.add_grammar(self._llama.model, grammar)  # a new grammar state per sequence
        if req.temperature <= 0:
            s.add_greedy()
        else:
            s.add_top_k(40 if req.top_k is None else req.top_k)
            s.add_top_p(0.95 if req.top_p is None else req.top_p, 1)
            s.add_min_p(0.05 if req.min_p is None else req.min_p, 1)
            s.add_temp(req.temperature)
            s.add_dist(self._seed if req.seed is None else req.seed & 0xFFFFFFFF)
        return s

    def _grammar(self, req: GenerationRequest) -> Any:
        """The compiled grammar of ``req`` (its GBNF, else its JSON schema), or None."""
        lc = self._llama.lc
        if req.grammar is not None:
            key = req.grammar
            make = lambda: lc.LlamaGrammar.from_string(key, verbose=False)  # noqa: E731
        elif req.json_schema is not None:
            key = json.dumps(req.json_schema)  # key order matters: it is the output order
            make = lambda: lc.LlamaGrammar.from_json_schema(key, verbose=False)  # noqa: E731
        else:
            return None
        grammar = self._grammars.get(key)
        if grammar is None:  # agents reuse a few schemas: compile each once
            grammar = self._grammars[key] = make()
        return grammar

    @staticmethod
    def is_greedy(req: GenerationRequest) -> bool:
        """Temperature 0 without a grammar or penalties: the argmax, no sampler chain."""
        return req.temperature <= 0 and req.json_schema is None and req.grammar is None and not penalized(req)

    def choose(self, seq: Seq, i: int) -> tuple[int, float]:
        """The next token from logits row ``i``: the argmax when greedy (with its margin
        while the cache holds verify-batch entries, see shared/llm/speculator.py), else the
        sequence's own sampler chain (temperature, grammar)."""
        if seq.greedy:
            return self.argmax(i, margin=seq.dirty is not None)
        return seq.sampler.sample(self._llama.ctx, i), float("inf")

    def choose_saved(self, seq: Seq, logits: Any) -> int:
        """The next token from a saved logits row (a prompt's last, shared by requests of
        the same prompt): what ``choose`` would give on that row in the context."""
        import numpy as np

        if seq.greedy:
            return int(np.argmax(logits))
        lc = self._llama.lc
        data = np.empty(len(logits), dtype=_TOKEN_DATA)  # llama_sampler_sample's candidates
        data["id"] = np.arange(len(logits), dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        arr = lc.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(lc.llama_token_data)), size=len(logits), selected=-1, sorted=False,
        )
        lc.llama_sampler_apply(seq.sampler.sampler, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("the sampler chain selected no token")
        tok = int(arr.data[arr.selected].id)
        lc.llama_sampler_accept(seq.sampler.sampler, tok)
        return tok

    def argmax(self, i: int, margin: bool = False) -> tuple[int, float]:
        """Greedy choice from logits row ``i`` (first max, like llama.cpp's greedy sampler)
        and, if asked, its margin over the runner-up (inf otherwise)."""
        import numpy as np

        row = self._llama.logits_row(i)
        tok = int(np.argmax(row))
        if not margin:
            return tok, float("inf")
        top2 = np.partition(row, -2)[-2:]
        return tok, float(top2[1] - top2[0])


def penalized(req: GenerationRequest) -> bool:
    """Whether ``req`` asks for a repeat, presence or frequency penalty."""
    return (req.repeat_penalty not in (None, 1.0) or bool(req.presence_penalty) or bool(req.frequency_penalty))
