"""Speculative decoding helpers of ``LlamaEngine``: when a draft is worth verifying, and
the draft model that writes drafts for a larger model of the same tokenizer.

Both draft sources feed the same verification (shared/llm/speculator.py, ``Speculator.verify``):
the target model decodes its last token plus the draft in one batch and keeps the
longest prefix its own sampler reproduces, so the output never depends on the draft.

- ``LookupPolicy``: prompt lookup (drafts copied from the prompt, free to make).
- ``DraftPolicy``: a draft model's drafts cost a decode of the small model per token, so
  the length is chosen per step to maximise expected tokens per second (docs/batching.md
  has the formula), zero when speculation does not pay; every ``probe_every`` refusals
  one draft is still tried so the estimates can recover.
- ``DraftModel``: the small model in the same process, on the same threads; one KV
  stream that follows whichever sequence drafts (prefix reuse across requests).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


class LookupPolicy:
    """Decides per step whether verifying a prompt-lookup draft is worth it.

    On CPUs a batch of n tokens does not cost the same as one. A draft of d tokens pays
    only when the tokens it is expected to yield, ``1 + acceptance * d``, come faster than
    plain steps: ``(1 + a*d) * cost(1) > cost(1 + d)``. Costs per batch size are running
    averages kept for the engine's life (properties of the machine and model); the
    acceptance rate is a running average within the request. Until a plain step has been
    measured nothing is drafted; a size never measured is tried once; a refused draft is
    tried again after ``probe_every`` refusals, then twice as many after each probe, but
    never when even a draft accepted whole could not pay. A request's
    first draft has at most ``first_k`` tokens; the draft length ``k`` doubles (up to
    ``k_max``) while whole drafts are accepted and falls back to the base length after a
    miss (to ``first_k`` while the request has had no draft token accepted).
    """

    def __init__(self, prior_acceptance: float = 0.8, probe_every: int = 16,
                 cost: dict[int, float] | None = None) -> None:
        self.cost: dict[int, float] = {} if cost is None else cost  # shared: machine facts
        self.prior = prior_acceptance
        self.acceptance = prior_acceptance
        self.probe_every = probe_every
        self._refused = 0
        self._next_probe = probe_every
        self.k = self.k0 = self.k_max = 10
        self.first_k = 3
        self.copied = 0

    def start_request(self, k: int, k_max: int) -> None:
        self.acceptance = self.prior
        self._refused = 0
        self._next_probe = self.probe_every
        self.k0 = k
        self.copied = 0  # draft tokens accepted in this request
        self.k = min(k, self.first_k)  # a first guess that is wrong costs little; whole acceptance doubles it
        self.k_max = max(k, k_max)

    def want(self, d: int) -> bool:
        c1, cn = self.cost.get(1), batch_cost(self.cost, 1 + d)
        if c1 is None:
            return False  # a plain step first: it measures what a draft must beat
        if cn is None or (1 + self.acceptance * d) * c1 > cn:
            return True
        if (1 + d) * c1 <= cn:
            return False  # even a draft accepted whole would not pay: nothing to probe
        self._refused += 1
        if self._refused < self._next_probe:
            return False
        # each probe that fails doubles the wait for the next (a fresh answer rarely
        # starts copying; a probe costs a whole verify batch)
        self._refused, self._next_probe = 0, self._next_probe * 2
        return True

    def record(self, n: int, seconds: float, drafted: int, accepted: int) -> None:
        update_average(self.cost, n, seconds)
        if drafted:
            self.acceptance = 0.6 * self.acceptance + 0.4 * (accepted / drafted)
            # inside a copied block whole drafts pass: ask for longer ones (bigger batches
            # cost less per token); after a miss start again from the base length, or from
            # a short one while this request has copied nothing yet.
            self.copied += accepted
            self.k = (min(self.k_max, self.k * 2) if accepted == drafted == self.k
                      else self.k0 if self.copied else min(self.k0, self.first_k))


class DraftPolicy:
    """Chooses each step's draft length ``d`` for a draft model (0: plain step).

    With per-token acceptance ``a``, a draft of ``d`` tokens yields ``1 + a + ... + a^d``
    tokens on average and costs ``d * c_draft + c_target(1 + d)``; a plain step yields one
    token for ``c_target(1)``. The best ``d`` maximises tokens per second; speculation
    runs only when that beats the plain rate; where even a draft accepted whole would not
    (a compute-bound host, where the draft model's token costs about as much as the
    target's), nothing is drafted and nothing probed. ``c_target(n)`` is shared with the lookup
    policy (same target model), ``c_draft`` is the draft model's running cost per token.
    """

    def __init__(self, cost: dict[int, float], draft_cost: dict[str, float],
                 prior_acceptance: float = 0.7, probe_every: int = 16) -> None:
        self.cost = cost
        self.draft_cost = draft_cost  # {"token": seconds per draft token}
        self.prior = self.acceptance = prior_acceptance
        self.probe_every = probe_every
        self.d_max = 4
        self._refused = 0

    def start_request(self, d_max: int) -> None:
        self.acceptance = self.prior
        self._refused = 0
        self.d_max = max(1, d_max)

    def length(self) -> int:
        """The draft length for this step (0: no draft)."""
        c1, cd = self.cost.get(1), self.draft_cost.get("token")
        if c1 is None:
            return 0  # a plain step first: it measures what a draft must beat
        if cd is None:
            return self.d_max  # the draft model's cost is measured by drafting once
        best, best_rate, could_pay = 0, 1.0 / c1, False
        for d in range(1, self.d_max + 1):
            cn = batch_cost(self.cost, 1 + d)
            if cn is None:
                return d  # an unmeasured size: measure it once
            rate = sum(self.acceptance ** i for i in range(d + 1)) / (d * cd + cn)
            could_pay = could_pay or (d + 1) / (d * cd + cn) > 1.0 / c1
            if rate > best_rate:
                best, best_rate = d, rate
        if best == 0 and could_pay:  # only a better acceptance would pay: probe it now and then
            self._refused += 1
            if self._refused % self.probe_every == 0:
                return 1
        return best

    def record(self, n: int, seconds: float, drafted: int, accepted: int) -> None:
        update_average(self.cost, n, seconds)
        if drafted:
            self.acceptance = 0.7 * self.acceptance + 0.3 * (accepted / drafted)


def batch_cost(cost: dict[int, float], n: int) -> float | None:
    """The cost of an n-row batch: measured, or interpolated between the nearest measured
    sizes above 1 (extrapolated linearly in rows past the largest); None while no size
    above 1 was measured (then one draft is tried to measure it)."""
    if n in cost:
        return cost[n]
    sizes = sorted(k for k in cost if k > 1)
    if not sizes:
        return None
    lo = max((k for k in sizes if k < n), default=None)
    hi = min((k for k in sizes if k > n), default=None)
    if lo is not None and hi is not None:
        return cost[lo] + (cost[hi] - cost[lo]) * (n - lo) / (hi - lo)
    if lo is not None:
        return cost[lo] * n / lo
    return cost[hi]  # type: ignore[index]  # only larger sizes measured: an upper bound


def update_average(table: dict[Any, float], key: Any, seconds: float) -> None:
    old = table.get(key)
    table[key] = seconds if old is None else 0.7 * old + 0.3 * seconds


class DraftModel:
    """A small model of the target's tokenizer writing greedy drafts.

    It keeps one KV stream and the list of tokens in it; ``draft(history, d)`` first
    evaluates whatever part of ``history`` the cache lacks (a whole prompt the first
    time, then the one or two tokens accepted since), then decodes up to ``d`` tokens
    greedily, stopping early when its own top probability falls under ``p_min``
    (a draft it doubts is rarely accepted). Runs on the engine's worker thread.
    """

    def __init__(self, lc: Any, internals: Any, path: Path, *, n_ctx: int, n_batch: int,
                 threads: int, use_extra_bufts: bool, p_min: float = 0.5) -> None:
        import numpy as np

        self._np = np
        self._lc = lc
        mp = lc.llama_model_default_params()
        mp.use_extra_bufts = use_extra_bufts
        self.model = internals.LlamaModel(path_model=str(path), params=mp, verbose=False)
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = internals.LlamaContext(model=self.model, params=cp, verbose=False)
        self.batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_batch = n_batch
        self.n_ctx = int(lc.llama_n_ctx(self.ctx.ctx))
        self.n_vocab = self.model.n_vocab()
        self.p_min = p_min
        self.kv: list[int] = []
        self.cost: dict[str, float] = {}  # "token": seconds per single-token draft decode

    def vocab_matches(self, target: Any) -> bool:
        """Same vocabulary size and the same pieces for a sample of ids."""
        if self.model.n_vocab() < target.n_vocab():
            return False
        step = max(1, target.n_vocab() // 64)
        return all(self.model.token_get_text(i) == target.token_get_text(i)
                   for i in range(0, target.n_vocab(), step))

    def draft(self, history: list[int], d: int) -> list[int]:
        """Up to ``d`` greedy tokens following ``history`` (prompt + accepted output + the
        target's next token)."""
        if d <= 0 or len(history) + d >= self.n_ctx:
            return []
        common = 0
        for x, y in zip(self.kv, history, strict=False):
            if x != y:
                break
            common += 1
        common = min(common, len(history) - 1)  # at least one token to get logits from
        if common < len(self.kv):
            self._lc.llama_memory_seq_rm(self.ctx.memory, 0, common, -1)
            del self.kv[common:]
        catch_up = history[common:]
        t0 = time.perf_counter()
        self._decode(catch_up)
        out: list[int] = []
        while True:
            row = self._np.ctypeslib.as_array(self.ctx.get_logits_ith(-1), shape=(self.n_vocab,))
            tok = int(row.argmax())
            out.append(tok)
            if len(out) >= d or self._top_prob(row, tok) < self.p_min:
                break
            self._decode([tok])
        if len(catch_up) <= 8:  # a prompt's first evaluation is not a draft's running cost
            update_average(self.cost, "token", (time.perf_counter() - t0) / len(out))
        return out

    def _top_prob(self, row: Any, tok: int) -> float:
        e = self._np.exp(row - row[tok])
        return float(1.0 / e.sum())

    def _decode(self, tokens: list[int]) -> None:
        for i in range(0, len(tokens), self.n_batch):
            part = tokens[i : i + self.n_batch]
            b = self.batch.batch
            pos = len(self.kv)
            for j, t in enumerate(part):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = t, pos + j, 1, j == len(part) - 1
                b.seq_id[j][0] = 0
            b.n_tokens = len(part)
            self.ctx.decode(self.batch)
            self.kv.extend(part)

    def reset(self) -> None:
        self.ctx.kv_cache_clear()
        self.kv.clear()

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()
