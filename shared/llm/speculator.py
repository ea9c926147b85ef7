"""Speculative decoding inside the engine's step, without a slower first token.

Only while a sequence runs alone: with several active sequences the batch already fills
the machine, so drafts are not added. llama-cpp-python's own draft support computes
logits for *every prompt token* (``logits_all``), which delays the first token (2.5 ->
3.9 s measured) and crashes past 512 tokens without ``logits_all=True``. Here the prompt
is evaluated exactly as without speculation; afterwards each step feeds the last token
plus a draft (prompt lookup, ``LlamaPromptLookupDecoding``, or a draft model), computes
logits for that small batch only, and keeps the longest prefix of the draft that the
sampler itself reproduces. Every output token is still chosen by the same sampler from
the model's logits, so at temperature 0 the text equals the non-speculative text
(bench/speculative.py checks it). Rejected draft positions are removed from the KV cache.

When a draft pays, and the draft model itself: shared/llm/speculation.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import EngineError, ModelUnavailable
from shared.llm.speculation import DraftModel, DraftPolicy, LookupPolicy, update_average

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.llm.config import EngineConfig
    from shared.llm.context import ModelContext
    from shared.llm.sampling import Sampling
    from shared.llm.sequence import Seq
    from shared.llm.slots import Slot


class Speculator:
    """Drafts, verification and the cost ledger of speculative steps (worker thread)."""

    def __init__(self, config: EngineConfig, llama: ModelContext, sampling: Sampling, threads: int) -> None:
        self.config = config
        self._llama = llama
        self._sampling = sampling
        self.cost: dict[int, float] = {}  # seconds per batch size (machine + model facts)
        # draft tokens verified and accepted over the engine's life, per draft source
        self.counts = {f"{src}_{k}": 0 for src in ("lookup", "model") for k in ("drafted", "accepted")}
        self.drafter = self._load_drafter(threads) if config.speculative == "draft" else None

    def _load_drafter(self, threads: int) -> DraftModel:
        """The draft model: same threads, its own context, the target's vocabulary."""
        path = self.config.draft_model_path
        if path is None or not Path(path).is_file():
            raise ModelUnavailable(f"speculative = draft needs a draft model file (got {path})")
        try:
            drafter = DraftModel(self._llama.lc, self._llama.internals, Path(path), n_ctx=self.config.n_ctx,
                                 n_batch=self.config.n_batch, threads=threads, use_extra_bufts=True,
                                 p_min=self.config.draft_p_min)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailable(f"llama.cpp could not load the draft model {path}: {e}") from e
        if not drafter.vocab_matches(self._llama.model):
            drafter.close()
            raise ModelUnavailable(f"draft model {path} does not share the vocabulary of {self.config.model_path}")
        return drafter

    def wants(self, req_speculative: bool | None, prompt_len: int) -> bool:
        """Whether a request speculates: its own choice, else the role's setting."""
        spec = req_speculative if req_speculative is not None else self.config.speculative != "off"
        return spec and prompt_len >= self.config.spec_min_prompt_tokens

    def start(self, seq: Seq) -> None:
        """Give a speculating sequence its token history and policies."""
        import numpy as np

        seq.hist = np.zeros(self._llama.n_ctx, dtype=np.intc)
        seq.hist[: len(seq.prompt)] = seq.prompt
        seq.policy = LookupPolicy(cost=self.cost)
        seq.policy.start_request(self.config.spec_num_pred_tokens, self.config.spec_max_pred_tokens)
        if self.drafter is not None:
            seq.draft_policy = DraftPolicy(self.cost, self.drafter.cost)
            seq.draft_policy.start_request(self.config.draft_tokens)

    def draft(self, seq: Seq) -> list[int]:
        """This step's draft: prompt lookup first (free to make, long in edits), else the
        draft model when its policy says a draft pays (empty: a plain step)."""
        assert seq.policy is not None
        seq.draft_src = ""
        room = min(seq.max_out - len(seq.out) - 1, self._llama.n_ctx - len(seq.slot.kv) - 2, self.config.n_batch - 1)
        if room <= 0:
            return []
        draft = self._lookup(seq.hist[: len(seq.prompt) + len(seq.out)], min(room, seq.policy.k))
        if draft and (not self.config.spec_adaptive or seq.policy.want(len(draft))):
            seq.draft_src = "lookup"
            return draft
        if self.drafter is None or seq.draft_policy is None:
            return []
        d = min(room, self.config.draft_tokens if not self.config.spec_adaptive else seq.draft_policy.length())
        draft = self.drafter.draft([*seq.prompt, *seq.out], d) if d > 0 else []  # out ends with nxt
        seq.draft_src = "model" if draft else ""
        return draft

    def verify(self, seq: Seq, alone: bool, dt: float, emit: Callable[[Seq, int], bool]) -> Literal["next", "end", "resync"]:
        """Choose the next token from this step's logits, verifying a draft if there was one:
        accepted draft tokens are emitted here; "next" leaves the new choice in ``seq.nxt``
        to emit, "end" means an accepted token ended the sequence, "resync" that the cache
        must be recomputed first (``redo``).

        Exact mode (speculation, greedy, no grammar): with repacked weights this build
        gives slightly different logits for tokens decoded in a batch than one at a time
        (measured |diff| <= 0.42 on Qwen 0.5B Q4_K_M; F16 models: 0). Every greedy choice
        made while the cache holds verify-batch entries must win by spec_exact_margin, else
        those entries are recomputed one token at a time (``redo``) and the choice is
        made on exactly the logits plain decoding would see.
        """
        draft, tau = seq.draft, self.config.spec_exact_margin
        if draft and seq.exact and seq.dirty is None:
            seq.dirty = seq.base
        seq.drafted += len(draft)
        accepted = 0
        over = need_resync = False
        nxt = seq.nxt
        for i, d in enumerate(draft):
            tok, margin = self._sampling.choose(seq, seq.row + i)
            if seq.dirty is not None and margin < tau:
                need_resync = True
                break
            if tok != d:
                nxt = tok
                break
            accepted += 1
            if emit(seq, tok):
                over = True
                break
        else:
            tok, margin = self._sampling.choose(seq, seq.row + len(draft))
            if seq.dirty is not None and margin < tau:
                need_resync = True
            else:
                nxt = tok
        if draft and accepted == 0 and seq.dirty == seq.base and not need_resync:
            # a draft rejected whole leaves one batch-computed entry: recompute it now, one
            # token, rather than every token after it when a later choice is close
            need_resync = True
        keep = seq.base + 1 + accepted
        if keep < len(seq.slot.kv):  # rejected draft positions leave the cache
            self._llama.truncate(seq.slot, keep)
        if alone and not need_resync:  # batch costs are only comparable alone
            self._record(seq, dt, accepted)
        seq.accepted += accepted
        if draft:
            self.counts[f"{seq.draft_src}_drafted"] += len(draft)
            self.counts[f"{seq.draft_src}_accepted"] += accepted
        if over:
            return "end"
        if need_resync:
            return "resync"
        seq.nxt = nxt
        return "next"

    def redo(self, seq: Seq, alone: bool, dt: float) -> None:
        """Recompute the cache entries a verify batch left (``verify`` said "resync") and
        leave the greedy choice after them in ``seq.nxt``. Reuses the batch: call only
        after every sequence of the step has read its logits."""
        t_resync = time.perf_counter()
        seq.nxt = self._resync(seq)
        seq.resyncs += 1
        spent = time.perf_counter() - t_resync
        if alone:  # the recomputation is part of what this step's draft cost; a plain
            # step's (cache dirty from an earlier draft) is not what plain steps cost
            self._record(seq, dt + (spent if seq.draft else 0.0), 0)
            if not seq.draft:
                self._account(seq, -spent)

    def _resync(self, seq: Seq) -> int:
        """Recompute cache entries from ``seq.dirty`` on one token at a time (the numerics
        of plain decoding) and return the greedy choice after them."""
        assert seq.dirty is not None
        slot, dirty = seq.slot, seq.dirty
        tokens = slot.kv[dirty:]
        self._llama.truncate(slot, dirty)
        if len(slot.kv) != dirty:
            raise EngineError("the KV cache cannot be truncated: speculation needs a model that allows it")
        for t in tokens:
            self._llama.decode_alone(slot, [t])
        seq.dirty = None
        return self._sampling.choose(seq, 0)[0]

    def _record(self, seq: Seq, seconds: float, accepted: int) -> None:
        """This step's cost for its batch size and its draft's acceptance, in the policy
        of the draft's source (both share the cost table)."""
        policy = seq.draft_policy if seq.draft_src == "model" else seq.policy
        if policy is not None:
            policy.record(1 + len(seq.draft), seconds, len(seq.draft), accepted)
        elif not seq.draft:  # every lone plain step measures what a draft must beat
            update_average(self.cost, 1, seconds)
        if seq.draft:
            self._account(seq, (1 + accepted) * self.cost.get(1, seconds) - seconds)

    def _account(self, seq: Seq, saved: float) -> None:
        """Keep the request's ledger of what speculation saved (the plain steps its tokens
        would have cost, minus what its drafts, verify batches and recomputations did
        cost); once it has lost ``spec_loss_steps`` plain steps' worth while most of its
        drafted tokens were rejected, the request goes on without it. The policies'
        estimates can be wrong for a request (a fresh answer that copies nothing); the
        ledger bounds what that costs."""
        if not self.config.spec_adaptive:
            return
        seq.spec_net += saved
        c1 = self.cost.get(1)
        # Sunk cost alone is no reason: an edit's opening tokens (the fence, the first line)
        # often miss before the long copies come. Judged from the 16th token on, and only
        # when most drafted tokens were rejected.
        if (c1 is not None and len(seq.out) >= 16 and seq.accepted * 2 < seq.drafted
                and seq.spec_net < -self.config.spec_loss_steps * c1):
            seq.spec = False

    def calibrate(self, slot: Slot) -> None:
        """Time what the speculation policies weigh before the first request needs them:
        a plain step, verify batches of the sizes drafts will have, and a draft token of
        the draft model. Without it a request's first drafts are guesses, and on a host
        where drafting never pays the first request would pay for finding that out."""
        llama = self._llama
        toks = llama.model.tokenize(b"def add(a, b):\n    return a + b\n" * 16, add_bos=False, special=False)
        sizes = sorted({1, 2, 3, 5, self.config.spec_num_pred_tokens + 1, self.config.draft_tokens + 1})
        ctx = 16
        toks = toks[: ctx + max(sizes)]
        try:
            llama.decode_alone(slot, toks[:ctx])
            for rep in range(3):  # the first pass allocates each batch shape: not timed
                for n in sizes:
                    rows = llama.put(0, slot, toks[ctx : ctx + n], logits_all=n > 1)
                    t0 = time.perf_counter()
                    llama.decode(rows)
                    if rep:
                        update_average(self.cost, n, time.perf_counter() - t0)
                    llama.truncate(slot, ctx)
            if self.drafter is not None:
                self.drafter.draft(toks[:ctx], 1)  # its prompt evaluation: not a draft's cost
                for i in range(2):
                    self.drafter.draft(toks[: ctx + 1 + i], self.config.draft_tokens)
        except Exception:  # a measurement only: the policies measure as they go instead
            self.cost.clear()
        finally:
            llama.forget(slot)
            if self.drafter is not None:
                self.drafter.reset()

    def _lookup(self, history: Any, room: int) -> list[int]:
        found = self._llama.lc.llama_speculative.LlamaPromptLookupDecoding.find_candidate_pred_tokens(
            history, max_ngram_size=self.config.spec_max_ngram, num_pred_tokens=room,
        )
        return [int(t) for t in found]

    def reset(self) -> None:
        if self.drafter is not None:
            self.drafter.reset()

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.close()
