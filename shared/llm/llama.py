"""``LlamaEngine``: one pinned llama.cpp model behind the ``TextEngine`` interface.

The house (each module a few screens; docs/batching.md has the measurements):

| module | holds |
|---|---|
| ``llama.py`` | ``LlamaEngine``: loading, pinning, the public API (``generate``, ``cancel``, ``stats``, ``aclose``) |
| ``config.py`` | ``EngineConfig`` |
| ``context.py`` | the llama.cpp model, context, raw batch and KV-cache operations; ``pin_process`` |
| ``queue.py`` | event-loop side: tickets, the bounded queue in front of the slots, hand-offs |
| ``handoff.py`` | the worker's wake-up of an event loop, off the worker's critical path |
| ``worker.py`` | the worker thread's step loop: admit, decode one batch, choose tokens, hand off |
| ``batch.py`` | what a step carries: prompt chunks, exact-batching calls |
| ``slots.py`` | KV streams per slot and prefix reuse |
| ``sequence.py`` | a running request's state and its text stream (stop strings) |
| ``sampling.py`` | sampler chains from a request, greedy argmax |
| ``prompt.py`` | chat messages → template → tokens |
| ``speculator.py`` / ``speculation.py`` | speculative steps / when a draft pays, the draft model |
| ``tracing.py`` | the span of each generation and the counters behind ``stats()`` |

What it guarantees (see tests/engine/):

- **Pinning before loading.** The constructor pins every thread of the process to its
  cpus (``os.sched_setaffinity``) before llama.cpp starts any thread, and runs
  ``threads = len(cpus)``: an agent never computes on cores it does not own. OpenMP's
  wait policy comes from the environment the placement plan gives the process (its
  default on exclusive cores, ``PASSIVE`` where processes share cores, see
  docs/placement.md); the engine itself sets none.
- **Continuous batching over ``slots`` sequences.** One worker thread owns the llama.cpp
  context and runs a step loop: each step is one ``llama_decode`` of a ``llama_batch``
  holding the next token of every generating sequence (each with its own ``seq_id`` and
  position) plus prompt tokens of joining ones. New requests join between steps, finished
  ones leave and free their slot; each keeps its own sampler chain (temperature, JSON
  schema grammar), stop strings, cancel and deadline. The event loop never blocks:
  pieces of text reach it with one ``call_soon_threadsafe`` per step and go to the async
  ``on_token`` callback in order. ``slots=1`` is the one-at-a-time engine.
- **Context policy.** ``n_ctx`` is per request, as with one slot: the context holds
  ``slots`` separate KV streams of ``n_ctx`` cells each (``n_seq_max=slots``,
  ``kv_unified=false``), so KV memory grows linearly with slots (Qwen2.5-0.5B: 12 KiB per
  token, 48 MiB per 4096-token slot) and one long request never starves another of cache.
- **Fast batching by default, exact batching as a setting.** By default a step is one
  ``llama_decode`` of every row (each generating sequence's next token plus prompt
  chunks) with weights repacked for the CPU's gemm kernels, as llama-server does: the
  fastest the hardware allows, but a token's logits then depend on who shares its call
  (repacked 4-row gemm kernels; from 8 rows the whole-prompt kernels), enough to flip
  greedy choices within a few dozen tokens on Qwen 0.5B Q4_K_M (|logit diff| 0.2-0.5; the
  F16 tiny test model shows none). ``exact_batching=True`` (roster ``exact_batching``)
  makes temperature-0 output independent of the neighbours: one KV stream per slot, no
  repacking, generating sequences decoded in calls of at most 7 one-token rows, and every
  prompt chunk at least 8 tokens long in a call of its own (a cached prefix is reused only
  up to 8 tokens before the prompt's end, so reuse never changes an output either). Every
  row is then computed bit-for-bit as alone (tests/engine/test_batching.py on the tiny
  model; ``bench/batching.py --exact`` on the real one); it gives up the repacked kernels
  and an extra call per step while prompts join (docs/batching.md has the measurements).
  ``slots=1`` keeps repacking.
- **Chunked prompt processing** (shared/llm/batch.py) and **prefix reuse**
  (shared/llm/slots.py).
- **Bounded queue** (shared/llm/queue.py). ``slots`` requests run and ``queue_limit`` more
  may wait; the next gets ``QueueFull`` at once. A waiting request whose deadline passes
  gets ``DeadlineExceeded``; a running one is stopped at the next decode step and gets
  ``DeadlineExceeded`` too, while the others continue. ``cancel(request_id)`` removes a
  waiting request or stops a running one before its next decode step (``Cancelled``;
  ``detail["tokens_after_cancel"]`` says how many tokens were still produced after the
  call: at most one step).
- **Structured output and greedy without a sampler** (shared/llm/sampling.py).
- **Speculative decoding without a slower first token** (shared/llm/speculator.py).
- **Tracing.** Each generation is an OpenTelemetry span ``chat {model}`` with the GenAI
  attributes plus ``syndicate.llm.*`` timings (queue wait, time to first token, tokens/s,
  speculative acceptance rate).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry import trace

from shared.errors import Cancelled, DeadlineExceeded, EngineError, ModelUnavailable, QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TokenCallback
from shared.llm.config import EngineConfig
from shared.llm.context import ModelContext, import_llama_cpp, pin_process
from shared.llm.handoff import LoopWaker
from shared.llm.prompt import PromptRenderer
from shared.llm.queue import RequestQueue, Ticket, relay
from shared.llm.sampling import Sampling
from shared.llm.slots import Slot
from shared.llm.speculator import Speculator
from shared.llm.tracing import EngineStats, result_attributes, span_error, tracer
from shared.llm.worker import Worker

__all__ = ["EngineConfig", "LlamaEngine", "import_llama_cpp", "pin_process"]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class LlamaEngine:
    """A pinned llama.cpp model serving ``slots`` requests at once (see the module docstring)."""

    RATE_WINDOW_S = 10.0  # stats()["tokens_per_s"]: output tokens over this many seconds

    def __init__(self, config: EngineConfig) -> None:
        if not 1 <= config.slots <= config.n_batch:
            raise ValueError(f"slots must be between 1 and n_batch ({config.n_batch})")
        if config.prefill_chunk < 1:
            raise ValueError("prefill_chunk must be >= 1")
        self.config = config
        self.name = config.name
        self.slots = config.slots
        self.cpus = sorted(config.cpus or os.sched_getaffinity(0))
        if config.pin:
            pin_process(self.cpus)  # before llama.cpp creates a single thread
        self.threads = max(1, min(config.threads or len(self.cpus), len(self.cpus)))
        path = Path(config.model_path)
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} does not exist")
        # Batched rows equal lone rows only without repacked weights (module docstring).
        self.exact_batching = config.exact_batching and config.slots > 1
        t0 = time.monotonic()
        self._llama = ModelContext(config, self.threads, repack=not self.exact_batching)
        self.load_seconds = time.monotonic() - t0
        meta = self._llama.model.metadata()
        self.gguf_name = meta.get("general.name", path.stem)
        self._prompts = PromptRenderer(self._llama.lc, self._llama.model, meta)
        self.chat_template = self._prompts.template  # model requests render tools with it
        self._sampling = Sampling(self._llama, config.seed)
        self._spec = Speculator(config, self._llama, self._sampling, self.threads)
        self._slots = [Slot(i) for i in range(config.slots)]
        self._stats = EngineStats(self.RATE_WINDOW_S)
        self._queue = RequestQueue(self.name, self.slots, config.queue_limit)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._wakers: dict[asyncio.AbstractEventLoop, LoopWaker] = {}
        self._worker = Worker(config, self._llama, self._slots, self._prompts, self._sampling, self._spec,
                              self._stats, exact=self.exact_batching)
        self._worker.start()

    # --- public API -------------------------------------------------------------------
    async def generate(
        self, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        """Run one chat generation (in a free slot, or queued); see the module doc."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        counts, queue = self._stats.counts, self._queue
        if self._closed:
            raise EngineError(f"engine {self.name} is closed")
        if request.deadline is not None and time.time() >= request.deadline:
            counts["timeouts"] += 1
            raise DeadlineExceeded("request arrived past its deadline")
        busy = queue.busy()
        try:
            queue.refuse_if_full()
        except QueueFull:
            counts["rejected"] += 1
            raise
        rid = request.request_id or uuid.uuid4().hex
        ticket = Ticket(request, rid)
        queue.tickets[rid] = ticket
        with tracer.start_as_current_span(
            f"chat {self.name}", kind=trace.SpanKind.CLIENT, record_exception=False, set_status_on_exception=False,
        ) as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "llama.cpp",
                "gen_ai.system": "llama.cpp",
                "gen_ai.request.model": self.name,
                "gen_ai.request.max_tokens": request.max_tokens,
                "gen_ai.request.temperature": request.temperature,
                "syndicate.llm.role": self.config.role,
                "syndicate.llm.cpus": list(self.cpus),
                "syndicate.llm.threads": self.threads,
                "syndicate.llm.queue_depth": len(queue.waiting),
                "syndicate.llm.running": len(queue.running),
                "syndicate.llm.slots": self.slots,
            })
            if request.request_id:
                span.set_attribute("syndicate.request_id", request.request_id)
            try:
                await queue.take_turn(ticket, busy)
                span.set_attribute("syndicate.llm.queue_wait_s", time.monotonic() - ticket.submitted)
                ticket.waker = self._waker(loop)
                ticket.outbox = asyncio.Queue()
                self._worker.submit(ticket)
                result = await relay(ticket, on_token)
            except Cancelled as e:
                counts["cancelled"] += 1
                span_error(span, e)
                # What it made before the stop (a caller that had enough, an early-stopped sample).
                span.set_attribute("gen_ai.usage.output_tokens", int(e.detail.get("output_tokens", 0)))
                span.set_attribute("gen_ai.response.finish_reasons", ["cancelled"])
                raise
            except DeadlineExceeded as e:
                counts["timeouts"] += 1
                span_error(span, e)
                raise
            except BaseException as e:
                counts["errors"] += 1
                span_error(span, e)
                raise
            finally:
                if queue.tickets.get(rid) is ticket:
                    del queue.tickets[rid]
            self._stats.finished(result)
            span.set_attributes(result_attributes(result))
            span.set_attribute("syndicate.llm.spec.resyncs", self._stats.last_resyncs)
            return result

    def cancel(self, request_id: str) -> bool:
        """Stop a waiting or running request; False when the id is unknown. Thread-safe."""
        ticket = self._queue.tickets.get(request_id)
        if ticket is None:
            return False
        ticket.cancelled_at = time.monotonic()
        ticket.cancel.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.drop_if_queued, ticket)
        return True

    def stats(self) -> dict[str, Any]:
        """Queue, slots, throughput and placement, for health replies, metrics and
        `syndicate status`. ``tokens_per_s``: output tokens of all sequences in the last
        RATE_WINDOW_S seconds divided by that window."""
        st, q, n_ctx = self._stats, self._queue, self._llama.n_ctx
        return {
            "model": self.name, "gguf_name": self.gguf_name, "role": self.config.role,
            "path": str(self.config.model_path), "cpus": list(self.cpus), "threads": self.threads,
            "queue_depth": len(q.waiting), "waiting": len(q.waiting), "queue_limit": self.config.queue_limit,
            "running": len(q.running), "slots": self.slots, "tokens_per_s": round(st.rate(), 2),
            "tokens_out_total": st.tokens_out, "n_ctx": n_ctx, "n_ctx_total": n_ctx * self.slots,
            "prefill_chunk": self.config.prefill_chunk, "exact_batching": self.exact_batching,
            "speculative": self.config.speculative,
            "draft_model": str(self.config.draft_model_path) if self._spec.drafter else None,
            "load_seconds": round(self.load_seconds, 3),
            **st.steps, **st.prompt, **{k: round(v, 3) for k, v in st.time.items()}, **st.counts, **{f"spec_{k}": v for k, v in self._spec.counts.items()},
            **{f"last_{k}": v for k, v in st.last.items()},
        }

    async def aclose(self) -> None:
        """Cancel everything, wait for the worker, free the model."""
        self._shutdown()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.join)
        self._free()

    def close(self) -> None:
        """Synchronous close for code without a loop (benchmarks, scripts)."""
        self._shutdown()
        self._worker.join()
        self._free()

    def _waker(self, loop: asyncio.AbstractEventLoop) -> LoopWaker:
        """The hand-off to ``loop`` (on that loop); those of closed loops are dropped."""
        waker = self._wakers.get(loop)
        if waker is None:
            for old in [w for w in self._wakers.values() if w.loop.is_closed()]:
                old.close()
                del self._wakers[old.loop]
            waker = self._wakers[loop] = LoopWaker(loop, self._queue.deliver)
        return waker

    def _shutdown(self) -> None:
        self._closed = True
        for t in list(self._queue.tickets.values()):
            t.stop()
        self._worker.stop()

    def _free(self) -> None:
        for waker in self._wakers.values():  # from its own loop, or after that loop closed
            if waker.loop.is_closed() or _running_loop() is waker.loop:
                waker.close()
        self._spec.close()
        self._llama.close()

    # --- for tests and benchmarks (call only while idle) --------------------------------
    def _reset_cache(self) -> None:
        """Empty every slot's cache."""
        self._llama.clear()
        for slot in self._slots:
            slot.cut(0)
        self._spec.reset()

    def _prompt_tokens(self, req: GenerationRequest) -> list[int]:
        return self._prompts.tokens(req)
