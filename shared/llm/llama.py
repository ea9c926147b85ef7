"""``LlamaEngine``: one pinned llama.cpp model behind the ``TextEngine`` interface.

What it guarantees (see tests/engine/):

- **Pinning before loading.** The constructor pins every thread of the process to its
  cpus (``os.sched_setaffinity``) before llama.cpp starts any thread, and runs
  ``threads = len(cpus)``: an agent never computes on cores it does not own. It sets
  ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before ``llama_cpp`` is imported, because
  spinning OpenMP threads of processes sharing cores collapse throughput 100x.
- **One generation at a time per model**, in a dedicated worker thread (a ``Llama`` has
  one context), so the event loop never blocks. Pieces of text are handed to the loop
  with ``call_soon_threadsafe`` and given to the async ``on_token`` callback in order.
- **Bounded queue.** ``queue_limit`` requests may wait besides the running one; the next
  gets ``QueueFull`` at once. A waiting request whose deadline passes gets
  ``DeadlineExceeded``; a running one is stopped at the next decode step and gets
  ``DeadlineExceeded`` too. ``cancel(request_id)`` removes a waiting request or stops a
  running one before its next decode step (``Cancelled``; ``detail["tokens_after_cancel"]``
  says how many tokens were still produced after the call: at most one step).
- **Structured output.** ``json_schema`` compiles to a llama.cpp grammar.
- **Speculative decoding without a slower first token.** llama-cpp-python's own draft
  support computes logits for *every prompt token* (``logits_all``), which delays the
  first token (2.5 -> 3.9 s measured) and crashes past 512 tokens without
  ``logits_all=True``. This engine runs its own decode loop instead: the prompt is
  evaluated exactly as without speculation (logits for its last token only), so time to
  first token is unchanged; afterwards each step feeds the last token plus a draft found
  by prompt lookup (``LlamaPromptLookupDecoding``: the continuation of the latest n-gram
  where it occurred earlier), computes logits for that small batch only, and keeps the
  longest prefix of the draft that the sampler itself reproduces. Every output token is
  still chosen by the same sampler from the model's logits, so at temperature 0 the text
  equals the non-speculative text (bench/speculative.py checks it), and above 0 the
  output distribution is unchanged. Rejected draft positions are removed from the KV cache.
- **Prefix reuse.** The KV cache keeps the previous request's tokens; a new prompt that
  starts the same (system prompt, a repair loop's conversation) only evaluates the rest.
- **Tracing.** Each generation is an OpenTelemetry span ``chat {model}`` with the GenAI
  attributes plus ``syndicate.llm.*`` timings (queue wait, time to first token, tokens/s,
  speculative acceptance rate).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import json
import os
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from shared.errors import Cancelled, DeadlineExceeded, EngineError, ModelUnavailable, QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TokenCallback

if TYPE_CHECKING:
    from shared.llm.roster import ResolvedRole

_tracer = trace.get_tracer("syndicate.llm")
_END = object()
_FALLBACK_TEMPLATE = (  # ChatML, for a GGUF without a chat template
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def pin_process(cpus: list[int]) -> None:
    """Pin every existing thread of this process to ``cpus``; threads started later
    inherit it. (``os.sched_setaffinity(0, ...)`` alone pins only the calling thread.)"""
    if not cpus:
        raise ValueError("pin_process needs at least one cpu")
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, PermissionError):
            os.sched_setaffinity(int(tid), cpus)
    os.sched_setaffinity(0, cpus)


def import_llama_cpp() -> Any:
    """Import llama_cpp after defaulting OMP_WAIT_POLICY=PASSIVE (OpenMP reads it once)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp

    return llama_cpp


@dataclass
class EngineConfig:
    """How to load and run one model (usually built from a roster role)."""

    model_path: Path
    name: str
    cpus: list[int] | None = None  # None: the cpus this process may use now
    pin: bool = True
    n_ctx: int = 4096
    n_batch: int = 512
    queue_limit: int = 4
    speculative: Literal["off", "prompt-lookup"] = "off"
    spec_num_pred_tokens: int = 10
    spec_max_ngram: int = 3
    spec_min_prompt_tokens: int = 0
    seed: int = 0
    role: str = ""

    @classmethod
    def from_role(cls, role: ResolvedRole, cpus: list[int] | None = None) -> EngineConfig:
        c = role.config
        return cls(
            model_path=role.path, name=role.model_id, cpus=cpus, n_ctx=c.n_ctx, n_batch=c.n_batch,
            queue_limit=c.queue_limit, speculative=c.speculative,
            spec_num_pred_tokens=c.spec_num_pred_tokens,
            spec_min_prompt_tokens=c.spec_min_prompt_tokens, role=role.name,
        )


@dataclass(eq=False)
class _Ticket:
    request: GenerationRequest
    request_id: str
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float | None = None
    ready: asyncio.Future | None = None


class _TextStream:
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


class _SpecPolicy:
    """Decides per step whether verifying a draft is worth it, from live measurements.

    On CPUs a batch of n tokens does not cost the same as one: measured here with Qwen
    0.5B Q4_K_M, 1 token ~25 ms but 2 tokens ~85 ms and 11 tokens ~190 ms. A draft of d
    tokens pays only when the tokens it is expected to yield, ``1 + acceptance * d``, come
    faster than plain steps: ``(1 + a*d) * cost(1) > cost(1 + d)``. Costs per batch size are
    running averages kept for the engine's life (they are properties of the machine and
    model); the acceptance rate is a running average within the request. A size never
    measured is tried once; a refused draft is still tried every ``probe_every`` refusals
    so the estimates can recover.
    """

    def __init__(self, prior_acceptance: float = 0.8, probe_every: int = 16) -> None:
        self.cost: dict[int, float] = {}
        self.prior = prior_acceptance
        self.acceptance = prior_acceptance
        self.probe_every = probe_every
        self._refused = 0

    def start_request(self) -> None:
        self.acceptance = self.prior
        self._refused = 0

    def want(self, d: int) -> bool:
        c1, cn = self.cost.get(1), self.cost.get(1 + d)
        if c1 is None or cn is None or (1 + self.acceptance * d) * c1 > cn:
            return True
        self._refused += 1
        return self._refused % self.probe_every == 0

    def record(self, n: int, seconds: float, drafted: int, accepted: int) -> None:
        old = self.cost.get(n)
        self.cost[n] = seconds if old is None else 0.7 * old + 0.3 * seconds
        if drafted:
            self.acceptance = 0.6 * self.acceptance + 0.4 * (accepted / drafted)


class LlamaEngine:
    """A pinned llama.cpp model with a bounded queue (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.name = config.name
        self.cpus = sorted(config.cpus or os.sched_getaffinity(0))
        if config.pin:
            pin_process(self.cpus)  # before llama.cpp creates a single thread
        self.threads = len(self.cpus)
        path = Path(config.model_path)
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} does not exist")
        lc = import_llama_cpp()
        self._lc = lc
        from llama_cpp import _internals

        self._internals = _internals
        t0 = time.monotonic()
        try:
            self._llm = lc.Llama(
                str(path), n_ctx=config.n_ctx, n_batch=config.n_batch, n_ubatch=config.n_batch,
                n_threads=self.threads, n_threads_batch=self.threads, seed=config.seed,
                logits_all=False, verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {e}") from e
        self.load_seconds = time.monotonic() - t0
        self._ctx = self._llm._ctx
        self._model = self._llm._model
        self._vocab = self._model.vocab
        self._batch = _internals.LlamaBatch(n_tokens=config.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._n_ctx = self._llm.n_ctx()
        meta = self._llm.metadata
        self.gguf_name = meta.get("general.name", path.stem)
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._formatter = lc.llama_chat_format.Jinja2ChatFormatter(
            template=meta.get("tokenizer.chat_template") or _FALLBACK_TEMPLATE,
            eos_token=self._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._model.token_get_text(bos) if bos != -1 else "",
        )
        self._pieces: dict[int, bytes] = {}
        self._spec_policy = _SpecPolicy()
        self._kv: list[int] = []  # tokens whose keys/values are in the cache, in order
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llm-{self.name}")
        self._queue: deque[_Ticket] = deque()
        self._running: _Ticket | None = None
        self._tickets: dict[str, _Ticket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._counts = {"served": 0, "rejected": 0, "timeouts": 0, "cancelled": 0, "errors": 0}
        self._last: dict[str, Any] = {}

    # --- public API -------------------------------------------------------------------
    async def generate(
        self, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        """Run one chat generation (queued behind the running one); see the module doc."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._closed:
            raise EngineError(f"engine {self.name} is closed")
        if request.deadline is not None and time.time() >= request.deadline:
            self._counts["timeouts"] += 1
            raise DeadlineExceeded("request arrived past its deadline")
        busy = self._running is not None or bool(self._queue)
        if busy and len(self._queue) >= self.config.queue_limit:
            self._counts["rejected"] += 1
            raise QueueFull(
                f"model {self.name} queue is full ({len(self._queue)} waiting, limit {self.config.queue_limit})",
                detail={"queue_depth": len(self._queue), "queue_limit": self.config.queue_limit},
            )
        rid = request.request_id or uuid.uuid4().hex
        ticket = _Ticket(request, rid)
        self._tickets[rid] = ticket
        with _tracer.start_as_current_span(f"chat {self.name}", kind=trace.SpanKind.CLIENT) as span:
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
                "syndicate.llm.queue_depth": len(self._queue),
            })
            if request.request_id:
                span.set_attribute("syndicate.request_id", request.request_id)
            try:
                if busy:
                    await self._wait_turn(ticket)
                else:
                    self._running = ticket
                span.set_attribute("syndicate.llm.queue_wait_s", time.monotonic() - ticket.submitted)
                result = await self._run(ticket, on_token)
            except Cancelled as e:
                self._counts["cancelled"] += 1
                _span_error(span, e)
                raise
            except DeadlineExceeded as e:
                self._counts["timeouts"] += 1
                _span_error(span, e)
                raise
            except BaseException as e:
                self._counts["errors"] += 1
                _span_error(span, e)
                raise
            finally:
                if self._tickets.get(rid) is ticket:
                    del self._tickets[rid]
            self._counts["served"] += 1
            span.set_attributes(_result_attributes(result))
            self._last = {"ttft_s": result.ttft_s, "tokens_per_s": result.tokens_per_s,
                          "spec_acceptance": result.spec_acceptance}
            return result

    def cancel(self, request_id: str) -> bool:
        """Stop a waiting or running request; False when the id is unknown. Thread-safe."""
        ticket = self._tickets.get(request_id)
        if ticket is None:
            return False
        ticket.cancelled_at = time.monotonic()
        ticket.cancel.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drop_if_queued, ticket)
        return True

    def stats(self) -> dict[str, Any]:
        """Queue and placement state, for health replies and `syndicate status`."""
        return {
            "model": self.name, "gguf_name": self.gguf_name, "role": self.config.role,
            "path": str(self.config.model_path), "cpus": list(self.cpus), "threads": self.threads,
            "queue_depth": len(self._queue), "queue_limit": self.config.queue_limit,
            "running": 1 if self._running is not None else 0, "n_ctx": self._n_ctx,
            "speculative": self.config.speculative, "load_seconds": round(self.load_seconds, 3),
            **self._counts, **{f"last_{k}": v for k, v in self._last.items()},
        }

    async def aclose(self) -> None:
        """Cancel everything, wait for the worker, free the model."""
        self._closed = True
        for rid in list(self._tickets):
            self.cancel(rid)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self._batch.close()
        self._llm.close()

    def close(self) -> None:
        """Synchronous close for code without a loop (benchmarks, scripts)."""
        self._closed = True
        for t in list(self._tickets.values()):
            t.cancel.set()
        self._executor.shutdown(wait=True)
        self._batch.close()
        self._llm.close()

    # --- queue ------------------------------------------------------------------------
    async def _wait_turn(self, ticket: _Ticket) -> None:
        assert self._loop is not None
        ticket.ready = self._loop.create_future()
        self._queue.append(ticket)
        deadline = ticket.request.deadline
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        try:
            await asyncio.wait_for(asyncio.shield(ticket.ready), timeout)
        except TimeoutError:
            self._abandon(ticket)
            raise DeadlineExceeded(
                f"request waited {time.monotonic() - ticket.submitted:.2f}s in the queue of "
                f"{self.name} and passed its deadline"
            ) from None
        except asyncio.CancelledError:
            self._abandon(ticket)
            raise

    def _abandon(self, ticket: _Ticket) -> None:
        """A waiter gives up: leave the queue, or hand on the turn it was just given."""
        if ticket in self._queue:
            self._queue.remove(ticket)
        elif self._running is ticket:
            self._release()

    def _drop_if_queued(self, ticket: _Ticket) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
            if ticket.ready is not None and not ticket.ready.done():
                ticket.ready.set_exception(Cancelled(f"request {ticket.request_id} cancelled while queued"))

    def _release(self) -> None:
        """The running request is over: give the model to the next waiter."""
        self._running = None
        while self._queue:
            nxt = self._queue.popleft()
            if nxt.ready is not None and not nxt.ready.done():
                self._running = nxt
                nxt.ready.set_result(None)
                return

    async def _run(self, ticket: _Ticket, on_token: TokenCallback | None) -> GenerationResult:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def push(piece: str) -> None:  # worker thread -> loop
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        fut = loop.run_in_executor(self._executor, self._generate_sync, ticket, push)

        def done(f: asyncio.Future) -> None:
            pieces.put_nowait(_END)
            self._release()
            if not f.cancelled():
                f.exception()  # mark retrieved: the awaiting side may be gone

        fut.add_done_callback(done)
        try:
            while (piece := await pieces.get()) is not _END:
                if on_token is not None and not ticket.cancel.is_set():
                    await on_token(piece)
        except BaseException:
            # on_token failed or our caller was cancelled: stop the worker at its next step.
            ticket.cancelled_at = ticket.cancelled_at or time.monotonic()
            ticket.cancel.set()
            raise
        return await fut

    # --- the worker thread ------------------------------------------------------------
    def _generate_sync(self, ticket: _Ticket, push: Any) -> GenerationResult:
        req = ticket.request
        self._check(ticket, 0, "")
        prompt = self._prompt_tokens(req)
        if len(prompt) >= self._n_ctx:
            raise EngineError(
                f"prompt of {len(prompt)} tokens does not fit the context of {self._n_ctx}",
                detail={"input_tokens": len(prompt), "n_ctx": self._n_ctx},
            )
        sampler = self._sampler(req)
        max_out = min(req.max_tokens, self._n_ctx - len(prompt))
        spec = req.speculative if req.speculative is not None else self.config.speculative == "prompt-lookup"
        spec = spec and len(prompt) >= self.config.spec_min_prompt_tokens
        stream = _TextStream(list(req.stop), push)
        out: list[int] = []
        times: list[float] = []  # when each output token was produced
        drafted = accepted_total = 0
        finish: str | None = None
        hist = None
        if spec:
            import numpy as np

            hist = np.zeros(self._n_ctx, dtype=np.intc)
            hist[: len(prompt)] = prompt
        try:
            self._eval_prompt(prompt, ticket)
            t_prompt = time.monotonic()

            def emit(tok: int) -> bool:
                """Record one sampled token; True when generation is over."""
                nonlocal finish
                if self._lc.llama_vocab_is_eog(self._vocab, tok):
                    finish = "stop"
                    return True
                out.append(tok)
                times.append(time.monotonic())
                if hist is not None:
                    hist[len(prompt) + len(out) - 1] = tok
                if stream.feed(self._piece(tok)):
                    finish = "stop"
                    return True
                if len(out) >= max_out:
                    finish = "length"
                    return True
                return False

            nxt = sampler.sample(self._ctx, -1)
            policy = self._spec_policy
            policy.start_request()
            while not emit(nxt):
                self._check(ticket, len(out), stream.text)
                draft: list[int] = []
                if hist is not None:
                    room = min(self.config.spec_num_pred_tokens, max_out - len(out) - 1,
                               self._n_ctx - len(self._kv) - 2, self.config.n_batch - 1)
                    if room > 0:
                        draft = self._lookup(hist[: len(prompt) + len(out)], room)
                        if draft and not policy.want(len(draft)):
                            draft = []
                base = len(self._kv)
                t_step = time.perf_counter()
                self._decode([nxt, *draft], logits_all=bool(draft))
                drafted += len(draft)
                accepted = 0
                over = False
                for i, d in enumerate(draft):
                    tok = sampler.sample(self._ctx, i)
                    if tok != d:
                        nxt = tok
                        break
                    accepted += 1
                    if emit(tok):
                        over = True
                        break
                else:
                    nxt = sampler.sample(self._ctx, len(draft)) if draft else sampler.sample(self._ctx, -1)
                policy.record(1 + len(draft), time.perf_counter() - t_step, len(draft), accepted)
                accepted_total += accepted
                keep = base + 1 + accepted
                if keep < len(self._kv):  # rejected draft positions leave the cache
                    self._truncate(keep)
                if over:
                    break
            stream.close()
        except (Cancelled, DeadlineExceeded) as e:
            e.detail.update({"output_tokens": len(out), "text": stream.text})
            if ticket.cancelled_at is not None:
                e.detail["tokens_after_cancel"] = sum(1 for t in times if t > ticket.cancelled_at)
            raise
        except RuntimeError as e:  # llama_decode failed: the cache state is unknown
            self._reset_cache()
            raise EngineError(f"llama.cpp generation failed: {e}") from e
        t_end = time.monotonic()
        n = len(out)
        ttft = (times[0] if times else t_prompt) - ticket.submitted
        rate = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 0.0
        return GenerationResult(
            text=stream.text, model=self.name, input_tokens=len(prompt), output_tokens=n,
            seconds=t_end - ticket.submitted, ttft_s=ttft, tokens_per_s=rate,
            finish_reason=finish or "stop",  # type: ignore[arg-type]
            spec_acceptance=(accepted_total / drafted) if drafted else None,
        )

    def _check(self, ticket: _Ticket, n_out: int, text: str) -> None:
        if ticket.cancel.is_set():
            raise Cancelled(f"request {ticket.request_id} cancelled after {n_out} tokens")
        dl = ticket.request.deadline
        if dl is not None and time.time() > dl:
            raise DeadlineExceeded(f"generation passed its deadline after {n_out} tokens")

    def _prompt_tokens(self, req: GenerationRequest) -> list[int]:
        r = self._formatter(messages=req.messages)
        return self._model.tokenize(r.prompt.encode("utf-8"), add_bos=not r.added_special, special=True)

    def _sampler(self, req: GenerationRequest) -> Any:
        s = self._internals.LlamaSampler()
        if req.json_schema is not None:
            grammar = self._lc.LlamaGrammar.from_json_schema(json.dumps(req.json_schema), verbose=False)
            s.add_grammar(self._model, grammar)
        if req.temperature <= 0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_top_p(0.95, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(req.temperature)
            s.add_dist(self.config.seed)
        return s

    def _eval_prompt(self, prompt: list[int], ticket: _Ticket) -> None:
        common = 0
        for a, b in zip(self._kv, prompt, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(prompt) - 1)  # re-evaluate at least one token for logits
        if common < len(self._kv):
            self._truncate(common)
        rest = prompt[len(self._kv) :]
        for i in range(0, len(rest), self.config.n_batch):
            self._check(ticket, 0, "")
            self._decode(rest[i : i + self.config.n_batch], logits_all=False)

    def _decode(self, tokens: list[int], *, logits_all: bool) -> None:
        self._batch.set_batch(tokens, len(self._kv), logits_all)
        self._ctx.decode(self._batch)
        self._kv.extend(tokens)

    def _truncate(self, keep: int) -> None:
        if not self._ctx.kv_cache_seq_rm(-1, keep, -1):
            self._reset_cache()
            return
        del self._kv[keep:]

    def _reset_cache(self) -> None:
        self._ctx.kv_cache_clear()
        self._kv.clear()

    def _lookup(self, history: Any, room: int) -> list[int]:
        found = self._lc.llama_speculative.LlamaPromptLookupDecoding.find_candidate_pred_tokens(
            history, max_ngram_size=self.config.spec_max_ngram, num_pred_tokens=room,
        )
        return [int(t) for t in found]

    def _piece(self, tok: int) -> bytes:
        piece = self._pieces.get(tok)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = self._lc.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            piece = buf.raw[: max(n, 0)]
            self._pieces[tok] = piece
        return piece


def _span_error(span: Any, e: BaseException) -> None:
    code = getattr(e, "code", type(e).__name__)
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, str(e)))
    if not isinstance(e, asyncio.CancelledError):
        span.record_exception(e)


def _result_attributes(r: GenerationResult) -> dict[str, Any]:
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
