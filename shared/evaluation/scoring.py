"""Scoring a bare GGUF model with llama.cpp: greedy generation (with TTFT), log-likelihood
of continuations, per-token logits of a chunk (perplexity, KL divergence) and speed.

The evaluator needs per-token logits, which the agents' chat engine does not expose, so it
drives ``llama_cpp.Llama`` directly. One model computes at a time: the runner never runs
two scorers concurrently, so a model gets every core it is given without oversubscription.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import ModelUnavailable
from shared.evaluation.models import ModelRef


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    seconds: float

    @property
    def gen_tok_s(self) -> float:
        dt = self.seconds - self.ttft_s
        return (self.completion_tokens - 1) / dt if self.completion_tokens > 1 and dt > 0 else 0.0


class LlamaScorer:
    """One model loaded for evaluation.

    ``logits=True`` keeps the logits of every position (needed for log-likelihood,
    perplexity and KLD); it costs n_ctx x vocab floats, so generation suites load without.
    """

    def __init__(self, ref: ModelRef, *, threads: int, n_ctx: int = 2048, logits: bool = False,
                 n_batch: int = 512) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelUnavailable("llama-cpp-python is not installed (pip install 'agent-syndicate[llm]')") from exc
        self.ref = ref
        self.threads = threads
        self.n_ctx = n_ctx
        self.logits_mode = logits
        self.llm: Any = llama_cpp.Llama(
            str(ref.path), n_ctx=n_ctx, n_batch=min(n_batch, n_ctx), n_ubatch=min(n_batch, n_ctx),
            n_threads=threads, n_threads_batch=threads, logits_all=logits, verbose=False,
        )
        self.chat = "tokenizer.chat_template" in self.llm.metadata
        probe = self.llm.tokenize(b"a", add_bos=True)
        self.adds_bos = len(probe) > 1 and probe[0] == self.llm.token_bos()

    # --- tokens -------------------------------------------------------------------------
    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    @property
    def n_vocab(self) -> int:
        return int(self.llm.n_vocab())

    # --- generation ---------------------------------------------------------------------
    def generate(self, *, messages: list[dict[str, str]] | None = None, prompt: str | None = None,
                 max_tokens: int = 512, stop: Sequence[str] = (), temperature: float = 0.0,
                 seed: int = 0, ban_eos: bool = False) -> Generation:
        """Stream one completion; greedy at temperature 0. Measures time to first token."""
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                                  "stop": list(stop) or None, "stream": True}
        if ban_eos:
            kwargs["logit_bias"] = {int(self.llm.token_eos()): -1e9}
        start = time.perf_counter()
        if messages is not None:
            stream = self.llm.create_chat_completion(messages=messages, **kwargs)
            pieces = (c["choices"][0]["delta"].get("content") or "" for c in stream)
        else:
            stream = self.llm.create_completion(prompt=prompt or "", **kwargs)
            pieces = (c["choices"][0]["text"] for c in stream)
        out: list[str] = []
        ttft = 0.0
        n = 0
        for piece in pieces:
            if n == 0:
                ttft = time.perf_counter() - start
            n += 1
            out.append(piece)
        seconds = time.perf_counter() - start
        prompt_tokens = int(self.llm.n_tokens) - n if self.llm.n_tokens >= n else 0
        return Generation("".join(out), prompt_tokens, n, ttft, seconds)

    # --- log-likelihoods ----------------------------------------------------------------
    def loglik(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log P(continuation tokens | context) per continuation (context evaluated once)."""
        from shared.evaluation.metrics import log_softmax

        self._need_logits()
        ctx = self.tokenize(context)
        if not ctx:
            ctx = [int(self.llm.token_bos())]
        self.llm.reset()
        self.llm.eval(ctx)
        out = []
        for cont in continuations:
            full = self.tokenize(context + cont)
            toks = full[len(ctx):] if full[: len(ctx)] == ctx else self.tokenize(cont, bos=False)
            if not toks:
                out.append(0.0)
                continue
            toks = toks[: self.n_ctx - len(ctx)]
            self.llm.n_tokens = len(ctx)  # drop the previous continuation, keep the context's KV
            self.llm.eval(toks)
            rows = np.asarray(self.llm.scores[len(ctx) - 1 : len(ctx) - 1 + len(toks)])
            lp = log_softmax(rows)
            out.append(float(lp[np.arange(len(toks)), toks].sum()))
        return out

    def chunk_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits at every position of one chunk ([len(tokens), vocab], float32 copy)."""
        self._need_logits()
        toks = list(tokens)
        if self.adds_bos:  # llama-perplexity starts every chunk with BOS
            toks[0] = int(self.llm.token_bos())
        self.llm.reset()
        self.llm.eval(toks)
        return np.array(self.llm.scores[: len(toks)], dtype=np.float32)

    def _need_logits(self) -> None:
        if not self.logits_mode:
            raise RuntimeError("this scorer was loaded without logits_all")

    # --- speed --------------------------------------------------------------------------
    def speed(self, prompt: str, max_tokens: int = 128, pp_tokens: int = 256) -> dict[str, float]:
        """Prompt processing tok/s (a ``pp_tokens`` block), then generation tok/s and TTFT of
        ``prompt`` (EOS banned so every run generates ``max_tokens``)."""
        block = self.tokenize((prompt + " ") * 64)[:pp_tokens]
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval(block)
        pp_s = time.perf_counter() - t0
        self.llm.reset()
        g = self.generate(prompt=prompt, max_tokens=max_tokens, ban_eos=True)
        return {
            "prompt_tok_s": len(block) / pp_s if pp_s > 0 else 0.0,
            "gen_tok_s": g.gen_tok_s,
            "ttft_s": g.ttft_s,
            "prompt_tokens": float(len(block)),
            "gen_tokens": float(g.completion_tokens),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()
        self.llm = None
