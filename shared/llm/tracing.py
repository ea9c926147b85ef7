"""What an engine tells the outside: the OpenTelemetry span of each generation
(``chat {model}`` with the GenAI attributes plus ``syndicate.llm.*`` timings) and the
counters behind ``stats()`` (served / rejected / …, steps, recent throughput)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from shared.llm.base import GenerationResult

tracer = trace.get_tracer("syndicate.llm")


class EngineStats:
    """Counters of one engine. ``token`` and ``step`` run on the worker thread, the rest
    on the event loop; ``rate()`` is safe from either."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.counts = {"served": 0, "rejected": 0, "timeouts": 0, "cancelled": 0, "errors": 0}
        self.last: dict[str, Any] = {}
        self.steps = {"decode_steps": 0, "seq_steps": 0, "max_seqs_per_step": 0}
        # prompt tokens evaluated, taken from a slot's own cache, copied from another slot's
        self.prompt = {"prompt_tokens_evaluated": 0, "prompt_tokens_reused": 0, "prompt_tokens_copied": 0,
                       "kv_copies": 0}
        # worker seconds: busy (a step: admission, decode, sampling, hand-off), in llama_decode,
        # in llama_decode calls that carried prompt rows
        self.time = {"worker_busy_s": 0.0, "decode_s": 0.0, "prefill_decode_s": 0.0}
        self.tokens_out = 0
        self.last_resyncs = 0  # of the last finished request (worker thread)
        self._emitted: deque[tuple[float, int]] = deque()  # (time, output tokens) per 0.1 s
        self._lock = threading.Lock()

    def token(self, now: float) -> None:
        """One output token was produced (before its result can reach the caller)."""
        with self._lock:
            self.tokens_out += 1
            if self._emitted and self._emitted[-1][0] >= now - 0.1:  # 0.1 s buckets
                self._emitted[-1] = (self._emitted[-1][0], self._emitted[-1][1] + 1)
            else:
                self._emitted.append((now, 1))
                while self._emitted[0][0] < now - self.window_s:
                    self._emitted.popleft()

    def step(self, k_seqs: int, seconds: float, prefill: bool) -> None:
        """One llama_decode call carrying rows of ``k_seqs`` sequences."""
        self.time["decode_s"] += seconds
        if prefill:
            self.time["prefill_decode_s"] += seconds
        self.steps["decode_steps"] += 1
        self.steps["seq_steps"] += k_seqs
        self.steps["max_seqs_per_step"] = max(self.steps["max_seqs_per_step"], k_seqs)

    def rate(self) -> float:
        """Output tokens of all sequences over the last ``window_s`` seconds, per second."""
        cutoff = time.monotonic() - self.window_s
        with self._lock:
            return sum(n for t, n in self._emitted if t >= cutoff) / self.window_s

    def finished(self, r: GenerationResult) -> None:
        self.counts["served"] += 1
        self.last = {"ttft_s": r.ttft_s, "tokens_per_s": r.tokens_per_s,
                     "spec_acceptance": r.spec_acceptance, "spec_resyncs": self.last_resyncs}


def span_error(span: Any, e: BaseException) -> None:
    code = getattr(e, "code", type(e).__name__)
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, str(e)))
    if not isinstance(e, asyncio.CancelledError):
        span.record_exception(e)


def result_attributes(r: GenerationResult) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.response.model": r.model,
        "gen_ai.usage.input_tokens": r.input_tokens,
        "gen_ai.usage.output_tokens": r.output_tokens,
        "gen_ai.response.finish_reasons": [r.finish_reason],
        "syndicate.llm.seconds": r.seconds,
        "syndicate.llm.tokens_per_s": r.tokens_per_s,
    }
    if r.ttft_s is not None:
        attrs["syndicate.llm.ttft_s"] = r.ttft_s
    if r.spec_acceptance is not None:
        attrs["syndicate.llm.spec.acceptance_rate"] = r.spec_acceptance
    return attrs
