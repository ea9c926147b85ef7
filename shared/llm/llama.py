"""``LlamaEngine``: one pinned llama.cpp model behind the ``TextEngine`` interface.

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
  model; ``bench/batching.py --exact`` on the real one); it gives up the repacked kernels and an extra call per step while prompts join (docs/batching.md has
  the measurements).
  ``slots=1`` keeps repacking. Each step's text pieces and results reach the event loop
  in one hand-off, not one per token.
- **Greedy without a sampler.** At temperature 0 without a grammar the next token is the
  argmax of the logits row (first maximum, as llama.cpp's greedy sampler), read in place:
  no candidate array of the whole vocabulary is built per token.
- **Chunked prompt processing.** While other sequences are generating, a step carries at
  most ``prefill_chunk`` prompt tokens (oldest joining request first; up to 7 more rather
  than leave a shorter tail) next to one token of every running sequence, so a long
  prompt delays running generations by a bounded amount per token instead of stalling
  them for the whole prompt; when nothing else is generating, a prompt is evaluated
  ``n_batch`` tokens per step as before.
- **Bounded queue.** ``slots`` requests run and ``queue_limit`` more may wait; the next
  gets ``QueueFull`` at once. A waiting request whose deadline passes gets
  ``DeadlineExceeded``; a running one is stopped at the next decode step and gets
  ``DeadlineExceeded`` too, while the others continue. ``cancel(request_id)`` removes a
  waiting request or stops a running one before its next decode step (``Cancelled``;
  ``detail["tokens_after_cancel"]`` says how many tokens were still produced after the
  call: at most one step).
- **Structured output.** ``json_schema`` compiles to a llama.cpp grammar (cached per schema).
- **Speculative decoding without a slower first token** (only while a sequence runs
  alone: with several active sequences the batch already fills the machine, so drafts
  are not added). llama-cpp-python's own draft support computes logits for *every prompt
  token* (``logits_all``), which delays the first token (2.5 -> 3.9 s measured) and
  crashes past 512 tokens without ``logits_all=True``. This engine evaluates the prompt
  exactly as without speculation; afterwards each step feeds the last token plus a draft
  found by prompt lookup (``LlamaPromptLookupDecoding``), computes logits for that small
  batch only, and keeps the longest prefix of the draft that the sampler itself
  reproduces. Every output token is still chosen by the same sampler from the model's
  logits, so at temperature 0 the text equals the non-speculative text
  (bench/speculative.py checks it). Rejected draft positions are removed from the KV cache.
- **Prefix reuse.** Each slot's KV stream keeps its previous request's tokens; a new
  request takes the free slot whose cached tokens share the longest prefix with its
  prompt (system prompt, a repair loop's conversation) and only evaluates the rest.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from shared.errors import Cancelled, DeadlineExceeded, EngineError, ModelUnavailable, QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TokenCallback
from shared.llm.gguf_meta import quant_name
from shared.llm.speculation import DraftModel, DraftPolicy, LookupPolicy, update_average

if TYPE_CHECKING:
    from shared.llm.roster import ResolvedRole

_tracer = trace.get_tracer("syndicate.llm")
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
    """Import llama_cpp, leaving OpenMP's wait policy to the environment: the placement
    plan sets ``OMP_WAIT_POLICY`` per agent (PASSIVE only where processes share cores;
    on exclusive cores PASSIVE sleeps at every ggml barrier and costs a third of the
    speed of a multi-threaded model)."""
    import llama_cpp

    return llama_cpp


@dataclass
class EngineConfig:
    """How to load and run one model (usually built from a roster role)."""

    model_path: Path
    name: str
    cpus: list[int] | None = None  # None: the cpus this process may use now
    # None: one per cpu. With SMT the placement plan owns both siblings of a core but runs
    # one thread per physical core (passed as OMP_NUM_THREADS by the stack / compose / k8s).
    threads: int | None = None
    pin: bool = True
    n_ctx: int = 4096  # per request (each slot gets its own KV stream this long)
    n_batch: int = 512
    queue_limit: int = 4  # requests waiting besides the running ones
    slots: int = 1  # requests decoded together (continuous batching when > 1)
    prefill_chunk: int = 64  # prompt tokens per step while other sequences generate
    exact_batching: bool = False  # slots > 1: batched rows computed exactly as lone ones (slower)
    exact_max_rows: int = 7  # rows per call that still take the lone-decode kernels (this build)
    exact_min_chunk: int = 8  # prompt rows per call that take the whole-prompt kernels
    speculative: Literal["off", "prompt-lookup", "draft"] = "off"
    draft_model_path: Path | None = None  # speculative="draft": a model of the same tokenizer
    draft_tokens: int = 4  # most tokens the draft model writes per step
    draft_p_min: float = 0.5  # it stops where its top probability falls under this
    spec_num_pred_tokens: int = 10
    spec_max_ngram: int = 3
    spec_min_prompt_tokens: int = 0
    spec_max_pred_tokens: int = 32  # drafts grow up to this while fully accepted
    spec_exact_margin: float = 1.0  # logit margin a greedy choice needs on batch-made cache
    spec_adaptive: bool = True  # False: always verify a found draft (benchmarks)
    spec_loss_steps: float = 4.0  # a request that lost this many plain steps to speculation stops it
    seed: int = 0
    role: str = ""

    @classmethod
    def from_role(cls, role: ResolvedRole, cpus: list[int] | None = None) -> EngineConfig:
        c = role.config
        return cls(
            model_path=role.path, name=role.model_id, cpus=cpus, n_ctx=c.n_ctx, n_batch=c.n_batch,
            queue_limit=c.queue_limit, slots=c.slots, prefill_chunk=c.prefill_chunk,
            exact_batching=c.exact_batching, speculative=c.speculative, spec_num_pred_tokens=c.spec_num_pred_tokens,
            spec_max_pred_tokens=c.spec_max_pred_tokens, spec_min_prompt_tokens=c.spec_min_prompt_tokens,
            draft_model_path=role.draft.path if role.draft else None, draft_tokens=c.draft_tokens,
            draft_p_min=c.draft_p_min, role=role.name,
        )


@dataclass(eq=False)
class _Ticket:
    request: GenerationRequest
    request_id: str
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float | None = None
    ready: asyncio.Future | None = None  # set when it may run (it waited in the queue)
    outbox: asyncio.Queue | None = None  # text pieces, then one _Outcome
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class _Outcome:
    result: GenerationResult | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Slot:
    """One KV stream (``seq_id``) and the tokens whose keys/values it holds, in order."""

    seq_id: int
    kv: list[int] = field(default_factory=list)
    last_used: float = 0.0
    busy: bool = False


@dataclass(eq=False)
class _Seq:
    """A running request inside the worker: where it is and what it has produced."""

    ticket: _Ticket
    slot: _Slot
    prompt: list[int]
    pending: list[int]  # prompt tokens not evaluated yet
    sampler: Any
    stream: _TextStream
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
    # this step's part of the batch
    row: int = -1  # batch index of the first row with this sequence's logits
    draft: list[int] = field(default_factory=list)
    base: int = 0  # cache length before this step


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
        lc = import_llama_cpp()
        self._lc = lc
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        self._internals = _internals
        set_verbose(False)
        _backend_init(lc)
        # Batched rows equal lone rows only without repacked weights (module docstring).
        self.exact_batching = config.exact_batching and config.slots > 1
        t0 = time.monotonic()
        try:
            mp = lc.llama_model_default_params()
            mp.use_extra_bufts = not self.exact_batching
            self._model = _internals.LlamaModel(path_model=str(path), params=mp, verbose=False)
            cp = lc.llama_context_default_params()
            cp.n_ctx = config.n_ctx * config.slots
            cp.n_batch = cp.n_ubatch = config.n_batch
            cp.n_seq_max = config.slots
            cp.kv_unified = False  # one KV stream per slot: exact batching, n_ctx each
            cp.n_threads = cp.n_threads_batch = self.threads
            cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama() sets it
            self._ctx = _internals.LlamaContext(model=self._model, params=cp, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {e}") from e
        self.load_seconds = time.monotonic() - t0
        self._vocab = self._model.vocab
        self._mem = self._ctx.memory
        self._batch = _internals.LlamaBatch(n_tokens=config.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._n_ctx = int(lc.llama_n_ctx_seq(self._ctx.ctx))  # per slot
        self._n_vocab = self._model.n_vocab()
        self._last_resyncs = 0
        meta = self._model.metadata()
        self.gguf_name = meta.get("general.name", path.stem)
        self.quant = quant_name(meta.get("general.file_type"))
        eos, bos = self._model.token_eos(), self._model.token_bos()
        self._formatter = lc.llama_chat_format.Jinja2ChatFormatter(
            template=meta.get("tokenizer.chat_template") or _FALLBACK_TEMPLATE,
            eos_token=self._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._model.token_get_text(bos) if bos != -1 else "",
        )
        self._pieces: dict[int, bytes] = {}
        self._grammars: dict[str, Any] = {}
        self._spec_cost: dict[int, float] = {}  # seconds per batch size (machine + model facts)
        self._drafter = self._load_drafter(path) if config.speculative == "draft" else None
        self._slots = [_Slot(i) for i in range(config.slots)]
        self._active: list[_Seq] = []  # worker thread only
        self._inbox: deque[_Ticket] = deque()  # loop -> worker
        self._wake = threading.Condition()
        self._queue: deque[_Ticket] = deque()  # waiting for a slot (event loop side)
        self._running: set[_Ticket] = set()  # handed to the worker (event loop side)
        self._tickets: dict[str, _Ticket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._counts = {"served": 0, "rejected": 0, "timeouts": 0, "cancelled": 0, "errors": 0}
        self._last: dict[str, Any] = {}
        self._emitted: deque[tuple[float, int]] = deque()  # (time, output tokens) per step
        self._tokens_out = 0
        self._steps = {"decode_steps": 0, "seq_steps": 0, "max_seqs_per_step": 0}
        # draft tokens verified and accepted over the engine's life, per draft source
        self._spec_counts = {f"{src}_{k}": 0 for src in ("lookup", "model") for k in ("drafted", "accepted")}
        self._rate_lock = threading.Lock()
        self._outgoing: list[tuple[_Ticket, Any]] = []  # worker thread only: this step's hand-offs
        self._worker = threading.Thread(target=self._work, name=f"llm-{self.name}", daemon=True)
        self._worker.start()

    def _load_drafter(self, target: Path) -> DraftModel:
        """The draft model: same threads, its own context, the target's vocabulary."""
        path = self.config.draft_model_path
        if path is None or not Path(path).is_file():
            raise ModelUnavailable(f"speculative = draft needs a draft model file (got {path})")
        try:
            drafter = DraftModel(self._lc, self._internals, Path(path), n_ctx=self.config.n_ctx,
                                 n_batch=self.config.n_batch, threads=self.threads, use_extra_bufts=True,
                                 p_min=self.config.draft_p_min)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailable(f"llama.cpp could not load the draft model {path}: {e}") from e
        if not drafter.vocab_matches(self._model):
            drafter.close()
            raise ModelUnavailable(f"draft model {path} does not share the vocabulary of {target}")
        return drafter

    # --- public API -------------------------------------------------------------------
    async def generate(
        self, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        """Run one chat generation (in a free slot, or queued); see the module doc."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._closed:
            raise EngineError(f"engine {self.name} is closed")
        if request.deadline is not None and time.time() >= request.deadline:
            self._counts["timeouts"] += 1
            raise DeadlineExceeded("request arrived past its deadline")
        busy = len(self._running) >= self.slots or bool(self._queue)
        if busy and len(self._queue) >= self.config.queue_limit:
            self._counts["rejected"] += 1
            raise QueueFull(
                f"model {self.name} is full ({len(self._running)} running in {self.slots} slots, "
                f"{len(self._queue)} waiting, limit {self.config.queue_limit})",
                detail={"queue_depth": len(self._queue), "queue_limit": self.config.queue_limit,
                        "running": len(self._running), "slots": self.slots},
            )
        rid = request.request_id or uuid.uuid4().hex
        ticket = _Ticket(request, rid)
        self._tickets[rid] = ticket
        with _tracer.start_as_current_span(
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
                "syndicate.llm.queue_depth": len(self._queue),
                "syndicate.llm.running": len(self._running),
                "syndicate.llm.slots": self.slots,
            })
            if request.request_id:
                span.set_attribute("syndicate.request_id", request.request_id)
            try:
                if busy:
                    await self._wait_turn(ticket)
                else:
                    self._running.add(ticket)
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
                          "spec_acceptance": result.spec_acceptance, "spec_resyncs": self._last_resyncs}
            span.set_attribute("syndicate.llm.spec.resyncs", self._last_resyncs)
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
        """Queue, slots, throughput and placement, for health replies, metrics and
        `syndicate status`. ``tokens_per_s``: output tokens of all sequences in the last
        RATE_WINDOW_S seconds divided by that window."""
        return {
            "model": self.name, "gguf_name": self.gguf_name, "quant": self.quant, "role": self.config.role,
            "path": str(self.config.model_path), "cpus": list(self.cpus), "threads": self.threads,
            "queue_depth": len(self._queue), "waiting": len(self._queue), "queue_limit": self.config.queue_limit,
            "running": len(self._running), "slots": self.slots, "tokens_per_s": round(self._rate(), 2),
            "tokens_out_total": self._tokens_out, "n_ctx": self._n_ctx, "n_ctx_total": self._n_ctx * self.slots,
            "prefill_chunk": self.config.prefill_chunk, "exact_batching": self.exact_batching,
            "speculative": self.config.speculative,
            "draft_model": str(self.config.draft_model_path) if self._drafter else None, "load_seconds": round(self.load_seconds, 3),
            **self._steps, **self._counts, **{f"spec_{k}": v for k, v in self._spec_counts.items()}, **{f"last_{k}": v for k, v in self._last.items()},
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

    def _shutdown(self) -> None:
        self._closed = True
        for t in list(self._tickets.values()):
            t.cancelled_at = t.cancelled_at or time.monotonic()
            t.cancel.set()
        with self._wake:
            self._wake.notify_all()

    def _free(self) -> None:
        if self._drafter is not None:
            self._drafter.close()
        self._batch.close()
        self._ctx.close()
        self._model.close()

    def _rate(self) -> float:
        cutoff = time.monotonic() - self.RATE_WINDOW_S
        with self._rate_lock:
            return sum(n for t, n in self._emitted if t >= cutoff) / self.RATE_WINDOW_S

    # --- queue (event loop side) ------------------------------------------------------
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
        """A waiter gives up: leave the queue, or hand on the slot it was just given."""
        if ticket in self._queue:
            self._queue.remove(ticket)
        elif ticket in self._running:
            self._release(ticket)

    def _drop_if_queued(self, ticket: _Ticket) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
            if ticket.ready is not None and not ticket.ready.done():
                ticket.ready.set_exception(Cancelled(f"request {ticket.request_id} cancelled while queued"))

    def _release(self, ticket: _Ticket) -> None:
        """A running request is over: give its slot to the next waiter."""
        self._running.discard(ticket)
        while self._queue and len(self._running) < self.slots:
            nxt = self._queue.popleft()
            if nxt.ready is not None and not nxt.ready.done():
                self._running.add(nxt)
                nxt.ready.set_result(None)

    async def _run(self, ticket: _Ticket, on_token: TokenCallback | None) -> GenerationResult:
        ticket.loop = asyncio.get_running_loop()
        ticket.outbox = asyncio.Queue()
        with self._wake:
            self._inbox.append(ticket)
            self._wake.notify()
        try:
            while not isinstance(item := await ticket.outbox.get(), _Outcome):
                if on_token is not None and not ticket.cancel.is_set():
                    await on_token(item)
        except BaseException:
            # on_token failed or our caller was cancelled: stop the sequence at its next
            # step (the slot is released when the worker has let go of it).
            ticket.cancelled_at = ticket.cancelled_at or time.monotonic()
            ticket.cancel.set()
            raise
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _done(self, ticket: _Ticket, outcome: _Outcome) -> None:  # on the event loop
        assert ticket.outbox is not None
        ticket.outbox.put_nowait(outcome)
        self._release(ticket)

    # --- the worker thread ------------------------------------------------------------
    def _work(self) -> None:
        """The step loop: admit new requests, decode one batch, hand out tokens."""
        if self.config.speculative != "off":
            try:
                self._calibrate()
            except Exception:  # a measurement only: the policies measure as they go instead
                self._spec_cost.clear()
        while True:
            with self._wake:
                while not self._inbox and not self._active and not self._closed:
                    self._wake.wait()
                if self._closed and not self._inbox and not self._active:
                    return
                new = list(self._inbox)
                self._inbox.clear()
            for ticket in new:
                self._admit(ticket)
            if self._active:
                try:
                    self._step()
                except Exception as e:  # a bug or llama.cpp failure: fail the batch, keep serving
                    for seq in list(self._active):
                        self._forget(seq.slot)
                        self._end(seq, EngineError(f"llama.cpp generation failed: {e}"))
            self._flush()

    def _push(self, ticket: _Ticket, item: Any) -> None:
        """Queue a text piece for the ticket's loop (delivered by ``_flush``)."""
        self._outgoing.append((ticket, item))

    def _finish(self, ticket: _Ticket, outcome: _Outcome) -> None:
        self._outgoing.append((ticket, outcome))

    def _flush(self) -> None:
        """Hand this step's pieces and outcomes to their event loops, one wake-up per loop
        per step: a wake-up per token would put the loop thread on the cores the decode
        threads are using once per token."""
        if not self._outgoing:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Ticket, Any]]] = {}
        for ticket, item in self._outgoing:
            if ticket.loop is not None and not ticket.loop.is_closed():
                by_loop.setdefault(ticket.loop, []).append((ticket, item))
        self._outgoing = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._deliver, items)

    def _deliver(self, items: list[tuple[_Ticket, Any]]) -> None:  # on the event loop
        for ticket, item in items:
            if isinstance(item, _Outcome):
                self._done(ticket, item)
            else:
                ticket.outbox.put_nowait(item)  # type: ignore[union-attr]

    def _admit(self, ticket: _Ticket) -> None:
        """Give a new request a free slot: the one whose cache shares most of its prompt."""
        req = ticket.request
        try:
            self._check(ticket, 0, "")
            prompt = self._prompt_tokens(req)
            if len(prompt) >= self._n_ctx:
                raise EngineError(
                    f"prompt of {len(prompt)} tokens does not fit the context of {self._n_ctx}",
                    detail={"input_tokens": len(prompt), "n_ctx": self._n_ctx},
                )
            free = [s for s in self._slots if not s.busy]
            if not free:  # the loop side hands over at most `slots` requests
                raise EngineError(f"no free slot in {self.name} (internal error)")
            slot = max(free, key=lambda s: (_common_prefix(s.kv, prompt), -s.last_used))
            # Re-evaluate at least exact_min_chunk tokens (>= 1 for logits): the same
            # kernels as a fresh evaluation, so a cached prefix never changes the output.
            common = max(0, min(_common_prefix(slot.kv, prompt), len(prompt) - self.config.exact_min_chunk))
            if common < len(slot.kv):
                self._truncate(slot, common)
            spec = req.speculative if req.speculative is not None else self.config.speculative != "off"
            spec = spec and len(prompt) >= self.config.spec_min_prompt_tokens
            greedy = req.temperature <= 0 and req.json_schema is None
            seq = _Seq(
                ticket=ticket, slot=slot, prompt=prompt, pending=prompt[len(slot.kv):],
                sampler=self._sampler(req), stream=_TextStream(list(req.stop), lambda p: self._push(ticket, p)),
                max_out=min(req.max_tokens, self._n_ctx - len(prompt)), spec=spec,
                # Exact mode (speculation, greedy, no grammar): see _after_decode.
                exact=spec and greedy, greedy=greedy,
            )
            if spec:
                import numpy as np

                seq.hist = np.zeros(self._n_ctx, dtype=np.intc)
                seq.hist[: len(prompt)] = prompt
                seq.policy = LookupPolicy(cost=self._spec_cost)
                seq.policy.start_request(self.config.spec_num_pred_tokens, self.config.spec_max_pred_tokens)
                if self._drafter is not None:
                    seq.draft_policy = DraftPolicy(self._spec_cost, self._drafter.cost)
                    seq.draft_policy.start_request(self.config.draft_tokens)
        except BaseException as e:
            self._finish(ticket, _Outcome(error=e))
            return
        slot.busy = True
        slot.last_used = time.monotonic()
        self._active.append(seq)

    def _step(self) -> None:
        """One scheduling step: a token (plus a draft when alone) of every generating
        sequence and a bounded chunk of joining prompts, then sampling per sequence.

        Exact batching runs the step as several llama_decode calls whose row counts keep
        every row on the kernels it would get alone (see ``_exact_calls``); otherwise
        the whole step is one call, as llama-server does.
        """
        for seq in list(self._active):
            try:
                self._check(seq.ticket, len(seq.out), seq.stream.text)
            except (Cancelled, DeadlineExceeded) as e:
                self._end(seq, e)
        if not self._active:
            return
        decoding = [s for s in self._active if not s.pending]
        alone = len(self._active) == 1 and not self._inbox
        for seq in decoding:
            seq.draft = self._draft(seq) if alone and seq.spec else []
        rows = sum(1 + len(s.draft) for s in decoding)
        budget = self.config.n_batch - (0 if self.exact_batching else rows)
        if decoding:  # others are generating: bounded prompt work per step
            budget = min(budget, max(self.config.prefill_chunk, self.config.exact_min_chunk))
        chunks: list[tuple[_Seq, int]] = []
        for seq in self._active:  # admission order: the oldest joiner first
            if seq.pending and budget > 0 and (k := self._chunk_len(len(seq.pending), budget)):
                chunks.append((seq, k))
                budget -= k
        if self.exact_batching:
            for call in self._exact_calls(decoding, chunks):
                self._call(*call, alone=alone)
        else:
            self._call(decoding, chunks, alone=alone)

    def _chunk_len(self, pending: int, budget: int) -> int:
        """Prompt tokens to evaluate now: at most ``budget``, but never leaving a tail
        shorter than ``exact_min_chunk`` (it would run on the small-batch kernels while
        the same tokens of a prompt evaluated whole run on the large-batch ones)."""
        take = min(pending, budget)
        if not self.exact_batching:
            return take
        least = self.config.exact_min_chunk
        if take < pending and take < least:
            return 0  # too little budget left this step: wait for the next
        if 0 < pending - take < least:
            take = pending if pending <= self.config.n_batch else pending - least
        return take

    def _exact_calls(self, decoding: list[_Seq], chunks: list[tuple[_Seq, int]]) -> list[tuple[list[_Seq], list[tuple[_Seq, int]]]]:
        """Split a step into llama_decode calls that compute every row as it is computed
        alone. This build picks its matmul kernels by the number of rows in a call: up to
        ``exact_max_rows`` (7) rows take the small-batch path a lone decode step takes,
        from ``exact_min_chunk`` (8) rows the large-batch path a whole prompt takes, and
        the two round differently (|logit diff| ~0.36 on Qwen 0.5B). So generating
        sequences are decoded in groups of at most ``exact_max_rows`` one-token rows, and
        each prompt chunk (never shorter than ``exact_min_chunk``) in a call of its own."""
        calls: list[tuple[list[_Seq], list[tuple[_Seq, int]]]] = []
        plain = [s for s in decoding if not s.draft]
        calls += [([s], []) for s in decoding if s.draft]  # a speculative verify batch
        if plain:
            n_groups = -(-len(plain) // self.config.exact_max_rows)
            size = -(-len(plain) // n_groups)  # even groups: 8 -> 4 + 4
            calls += [(plain[i : i + size], []) for i in range(0, len(plain), size)]
        calls += [([], [c]) for c in chunks]
        return calls

    def _call(self, decoding: list[_Seq], chunks: list[tuple[_Seq, int]], *, alone: bool) -> None:
        """One llama_decode of these sequences' rows, then their sampling."""
        b = self._batch.batch
        n = 0
        for seq in decoding:
            seq.base = len(seq.slot.kv)
            seq.row = n
            n = self._put(b, n, seq.slot, [seq.nxt, *seq.draft], logits_all=bool(seq.draft))
        for seq, k in chunks:
            done = k == len(seq.pending)
            seq.row = n + k - 1 if done else -1
            n = self._put(b, n, seq.slot, seq.pending[:k], logits_all=False, logits_last=done)
        b.n_tokens = n
        t_step = time.perf_counter()
        try:
            self._ctx.decode(self._batch)
        except RuntimeError as e:  # llama_decode failed: these sequences' cache is unknown
            for seq in [*decoding, *(s for s, _ in chunks)]:
                self._forget(seq.slot)
                self._end(seq, EngineError(f"llama.cpp generation failed: {e}"))
            return
        dt = time.perf_counter() - t_step
        k_seqs = len(decoding) + len(chunks)
        self._steps["decode_steps"] += 1
        self._steps["seq_steps"] += k_seqs
        self._steps["max_seqs_per_step"] = max(self._steps["max_seqs_per_step"], k_seqs)
        for seq in decoding:
            seq.slot.kv.extend([seq.nxt, *seq.draft])
        for seq, k in chunks:
            seq.slot.kv.extend(seq.pending[:k])
            seq.pending = seq.pending[k:]
        resync: list[_Seq] = []
        for seq in decoding:
            self._after_decode(seq, alone, dt, resync)
        for seq, _ in chunks:
            if seq.pending:
                continue
            seq.t_prompt = time.monotonic()
            seq.nxt = self._choose(seq, seq.row)[0]
            if self._emit(seq, seq.nxt):
                self._end(seq)
        # Recomputations reuse the batch: only after these sequences have read their logits.
        for seq in resync:
            t_resync = time.perf_counter()
            seq.nxt = self._resync(seq)
            seq.resyncs += 1
            spent = time.perf_counter() - t_resync
            if alone:  # the recomputation is part of what this step's draft cost; a plain
                # step's (cache dirty from an earlier draft) is not what plain steps cost
                self._record(seq, dt + (spent if seq.draft else 0.0), 0)
                if not seq.draft:
                    self._account(seq, -spent)
            if self._emit(seq, seq.nxt):
                self._end(seq)

    def _record(self, seq: _Seq, seconds: float, accepted: int) -> None:
        """This step's cost for its batch size and its draft's acceptance, in the policy
        of the draft's source (both share the cost table)."""
        policy = seq.draft_policy if seq.draft_src == "model" else seq.policy
        if policy is not None:
            policy.record(1 + len(seq.draft), seconds, len(seq.draft), accepted)
        elif not seq.draft:  # every lone plain step measures what a draft must beat
            update_average(self._spec_cost, 1, seconds)
        if seq.draft:
            self._account(seq, (1 + accepted) * self._spec_cost.get(1, seconds) - seconds)

    def _account(self, seq: _Seq, saved: float) -> None:
        """Keep the request's ledger of what speculation saved (the plain steps its tokens
        would have cost, minus what its drafts, verify batches and recomputations did
        cost); once it has lost ``spec_loss_steps`` plain steps' worth while most of its
        drafted tokens were rejected, the request goes on without it. The policies' estimates can be wrong for a request (a fresh answer
        that copies nothing); the ledger bounds what that costs."""
        if not self.config.spec_adaptive:
            return
        seq.spec_net += saved
        c1 = self._spec_cost.get(1)
        # Sunk cost alone is no reason: an edit's opening tokens (the fence, the first line)
        # often miss before the long copies come. Judged from the 16th token on, and only
        # when most drafted tokens were rejected.
        if (c1 is not None and len(seq.out) >= 16 and seq.accepted * 2 < seq.drafted
                and seq.spec_net < -self.config.spec_loss_steps * c1):
            seq.spec = False

    def _after_decode(self, seq: _Seq, alone: bool, dt: float, resync: list[_Seq]) -> None:
        """Choose the next token from this step's logits, verifying a draft if there was one.

        Exact mode (speculation, greedy, no grammar): with repacked weights this build
        gives slightly different logits for tokens decoded in a batch than one at a time
        (measured |diff| <= 0.42 on Qwen 0.5B Q4_K_M; F16 models: 0). Every greedy choice
        made while the cache holds verify-batch entries must win by spec_exact_margin, else
        those entries are recomputed one token at a time (``_resync``) and the choice is
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
            tok, margin = self._choose(seq, seq.row + i)
            if seq.dirty is not None and margin < tau:
                need_resync = True
                break
            if tok != d:
                nxt = tok
                break
            accepted += 1
            if self._emit(seq, tok):
                over = True
                break
        else:
            tok, margin = self._choose(seq, seq.row + len(draft))
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
            self._truncate(seq.slot, keep)
        if alone and not need_resync:  # batch costs are only comparable alone
            self._record(seq, dt, accepted)
        seq.accepted += accepted
        if draft:
            self._spec_counts[f"{seq.draft_src}_drafted"] += len(draft)
            self._spec_counts[f"{seq.draft_src}_accepted"] += accepted
        if over:
            self._end(seq)
        elif need_resync:
            resync.append(seq)
        else:
            seq.nxt = nxt
            if self._emit(seq, nxt):
                self._end(seq)

    def _draft(self, seq: _Seq) -> list[int]:
        """This step's draft: prompt lookup first (free to make, long in edits), else the
        draft model when its policy says a draft pays (empty: a plain step)."""
        assert seq.policy is not None
        seq.draft_src = ""
        room = min(seq.max_out - len(seq.out) - 1, self._n_ctx - len(seq.slot.kv) - 2, self.config.n_batch - 1)
        if room <= 0:
            return []
        draft = self._lookup(seq.hist[: len(seq.prompt) + len(seq.out)], min(room, seq.policy.k))
        if draft and (not self.config.spec_adaptive or seq.policy.want(len(draft))):
            seq.draft_src = "lookup"
            return draft
        if self._drafter is None or seq.draft_policy is None:
            return []
        d = min(room, self.config.draft_tokens if not self.config.spec_adaptive else seq.draft_policy.length())
        draft = self._drafter.draft([*seq.prompt, *seq.out], d) if d > 0 else []  # out ends with nxt
        seq.draft_src = "model" if draft else ""
        return draft

    def _put(self, b: Any, n: int, slot: _Slot, tokens: list[int], *, logits_all: bool,
             logits_last: bool = True) -> int:
        """Append ``tokens`` of ``slot``'s sequence to the raw llama_batch at row ``n``."""
        pos = len(slot.kv)
        for i, t in enumerate(tokens):
            b.token[n + i] = t
            b.pos[n + i] = pos + i
            b.seq_id[n + i][0] = slot.seq_id
            b.n_seq_id[n + i] = 1
            b.logits[n + i] = logits_all
        if logits_last:
            b.logits[n + len(tokens) - 1] = True
        return n + len(tokens)

    def _emit(self, seq: _Seq, tok: int) -> bool:
        """Record one chosen token; True when the sequence is finished."""
        if self._lc.llama_vocab_is_eog(self._vocab, tok):
            seq.finish = "stop"
            return True
        seq.out.append(tok)
        now = time.monotonic()
        seq.times.append(now)
        with self._rate_lock:  # before the result can reach the caller
            self._tokens_out += 1
            if self._emitted and self._emitted[-1][0] >= now - 0.1:  # 0.1 s buckets
                self._emitted[-1] = (self._emitted[-1][0], self._emitted[-1][1] + 1)
            else:
                self._emitted.append((now, 1))
                while self._emitted[0][0] < now - self.RATE_WINDOW_S:
                    self._emitted.popleft()
        if seq.hist is not None:
            seq.hist[len(seq.prompt) + len(seq.out) - 1] = tok
        if seq.stream.feed(self._piece(tok)):
            seq.finish = "stop"
            return True
        if len(seq.out) >= seq.max_out:
            seq.finish = "length"
            return True
        return False

    def _end(self, seq: _Seq, error: BaseException | None = None) -> None:
        """The sequence leaves: its slot (and the cache it filled) is free for the next."""
        if seq in self._active:
            self._active.remove(seq)
        seq.slot.busy = False
        seq.slot.last_used = time.monotonic()
        ticket = seq.ticket
        if error is not None:
            if isinstance(error, (Cancelled, DeadlineExceeded)):
                error.detail.update({"output_tokens": len(seq.out), "text": seq.stream.text})
                if ticket.cancelled_at is not None:
                    error.detail["tokens_after_cancel"] = sum(1 for t in seq.times if t > ticket.cancelled_at)
            self._finish(ticket, _Outcome(error=error))
            return
        seq.stream.close()
        self._last_resyncs = seq.resyncs
        n, times = len(seq.out), seq.times
        t_end = time.monotonic()
        ttft = (times[0] if times else (seq.t_prompt or t_end)) - ticket.submitted
        rate = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 0.0
        self._finish(ticket, _Outcome(result=GenerationResult(
            text=seq.stream.text, model=self.name, input_tokens=len(seq.prompt), output_tokens=n,
            seconds=t_end - ticket.submitted, ttft_s=ttft, tokens_per_s=rate,
            finish_reason=seq.finish or "stop",  # type: ignore[arg-type]
            spec_acceptance=(seq.accepted / seq.drafted) if seq.drafted else None,
        )))

    def _choose(self, seq: _Seq, i: int) -> tuple[int, float]:
        """The next token from logits row ``i``: the argmax when greedy (with its margin
        while the cache holds verify-batch entries, see ``_after_decode``), else the
        sequence's own sampler chain (temperature, grammar)."""
        if seq.greedy:
            return self._argmax(i, margin=seq.dirty is not None)
        return seq.sampler.sample(self._ctx, i), float("inf")

    def _argmax(self, i: int, margin: bool = False) -> tuple[int, float]:
        """Greedy choice from logits row ``i`` (first max, like llama.cpp's greedy sampler)
        and, if asked, its margin over the runner-up (inf otherwise)."""
        import numpy as np

        row = np.ctypeslib.as_array(self._ctx.get_logits_ith(i), shape=(self._n_vocab,))
        tok = int(np.argmax(row))
        if not margin:
            return tok, float("inf")
        top2 = np.partition(row, -2)[-2:]
        return tok, float(top2[1] - top2[0])

    def _resync(self, seq: _Seq) -> int:
        """Recompute cache entries from ``seq.dirty`` on one token at a time (the numerics
        of plain decoding) and return the greedy choice after them."""
        assert seq.dirty is not None
        slot, dirty = seq.slot, seq.dirty
        tokens = slot.kv[dirty:]
        self._truncate(slot, dirty)
        if len(slot.kv) != dirty:
            raise EngineError("the KV cache cannot be truncated: speculation needs a model that allows it")
        for t in tokens:
            self._decode_alone(slot, [t])
        seq.dirty = None
        return self._choose(seq, 0)[0]

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
            key = json.dumps(req.json_schema)  # key order matters: it is the output order
            grammar = self._grammars.get(key)
            if grammar is None:  # agents reuse a few schemas: compile each once
                grammar = self._lc.LlamaGrammar.from_json_schema(key, verbose=False)
                self._grammars[key] = grammar
            s.add_grammar(self._model, grammar)  # a new grammar state per sequence
        if req.temperature <= 0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_top_p(0.95, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(req.temperature)
            s.add_dist(self.config.seed if req.seed is None else req.seed & 0xFFFFFFFF)
        return s

    def _calibrate(self) -> None:
        """Time what the speculation policies weigh before the first request needs them:
        a plain step, verify batches of the sizes drafts will have, and a draft token of
        the draft model. Without it a request's first drafts are guesses, and on a host
        where drafting never pays the first request would pay for finding that out."""
        slot = self._slots[0]
        toks = self._model.tokenize(b"def add(a, b):\n    return a + b\n" * 16, add_bos=False, special=False)
        sizes = sorted({1, 2, 3, 5, self.config.spec_num_pred_tokens + 1, self.config.draft_tokens + 1})
        ctx = 16
        toks = toks[: ctx + max(sizes)]
        b = self._batch.batch
        try:
            self._decode_alone(slot, toks[:ctx])
            for rep in range(3):  # the first pass allocates each batch shape: not timed
                for n in sizes:
                    b.n_tokens = self._put(b, 0, slot, toks[ctx : ctx + n], logits_all=n > 1)
                    t0 = time.perf_counter()
                    self._ctx.decode(self._batch)
                    if rep:
                        update_average(self._spec_cost, n, time.perf_counter() - t0)
                    self._truncate(slot, ctx)
            if self._drafter is not None:
                self._drafter.draft(toks[:ctx], 1)  # its prompt evaluation: not a draft's cost
                for i in range(2):
                    self._drafter.draft(toks[: ctx + 1 + i], self.config.draft_tokens)
        finally:
            self._forget(slot)
            if self._drafter is not None:
                self._drafter.reset()

    def _decode_alone(self, slot: _Slot, tokens: list[int]) -> None:
        """Decode ``tokens`` of one sequence in a batch of their own (logits for the last)."""
        b = self._batch.batch
        b.n_tokens = self._put(b, 0, slot, tokens, logits_all=False)
        self._ctx.decode(self._batch)
        slot.kv.extend(tokens)

    def _truncate(self, slot: _Slot, keep: int) -> None:
        if not self._lc.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1):
            self._forget(slot)
            return
        del slot.kv[keep:]

    def _forget(self, slot: _Slot) -> None:
        """Drop a slot's whole cache (its contents are unknown or unwanted)."""
        self._lc.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.kv.clear()

    def _reset_cache(self) -> None:
        """Empty every slot's cache (benchmarks: call only while idle)."""
        self._ctx.kv_cache_clear()
        for slot in self._slots:
            slot.kv.clear()
        if self._drafter is not None:
            self._drafter.reset()

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


_BACKEND = threading.Lock()
_backend_ready = False


def _backend_init(lc: Any) -> None:
    """llama_backend_init once per process (what ``Llama()`` does on first use)."""
    global _backend_ready
    with _BACKEND:
        if not _backend_ready:
            lc.llama_backend_init()
            _backend_ready = True


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
