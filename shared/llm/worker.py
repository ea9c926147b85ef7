"""The worker thread: it alone touches the llama.cpp context, and runs the step loop.

Each step admits new requests into free slots, decodes one batch (``_call``: the next
token of every generating sequence plus prompt chunks of joining ones, shared/llm/batch.py),
chooses each sequence's next token, and hands the step's text pieces and results to the
event loops in one ``call_soon_threadsafe`` per loop (a wake-up per token would put the
loop thread on the cores the decode threads are using once per token). A finished,
cancelled or timed-out sequence leaves at the next step and frees its slot while the
others continue; a running request is stopped before its next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from shared.errors import Cancelled, DeadlineExceeded, EngineError
from shared.llm.base import GenerationResult
from shared.llm.batch import exact_calls, prompt_chunks
from shared.llm.queue import Outcome, Ticket
from shared.llm.sequence import Seq, TextStream
from shared.llm.slots import Slot, common_prefix, pick_slot, reusable

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.llm.config import EngineConfig
    from shared.llm.context import ModelContext
    from shared.llm.prompt import PromptRenderer
    from shared.llm.sampling import Sampling
    from shared.llm.speculator import Speculator
    from shared.llm.tracing import EngineStats


class Worker:
    """The step loop over ``slots`` sequences of one model (see the module docstring)."""

    def __init__(self, config: EngineConfig, llama: ModelContext, slots: list[Slot], prompts: PromptRenderer,
                 sampling: Sampling, spec: Speculator, stats: EngineStats, *, exact: bool,
                 deliver: Callable[[list[tuple[Ticket, Any]]], None]) -> None:
        self.config, self.name = config, config.name
        self._llama, self._slots, self._prompts = llama, slots, prompts
        self._sampling, self._spec, self._stats = sampling, spec, stats
        self._exact, self._deliver = exact, deliver
        self.active: list[Seq] = []  # worker thread only
        self._inbox: deque[Ticket] = deque()  # loop -> worker
        self._wake = threading.Condition()
        self._closed = False
        self._outgoing: list[tuple[Ticket, Any]] = []  # worker thread only: this step's hand-offs
        self._thread = threading.Thread(target=self._work, name=f"llm-{self.name}", daemon=True)

    # --- from the event loop ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, ticket: Ticket) -> None:
        with self._wake:
            self._inbox.append(ticket)
            self._wake.notify()

    def stop(self) -> None:
        """Finish what runs (the caller cancelled it), then end the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()

    def join(self) -> None:
        self._thread.join()

    # --- the step loop -----------------------------------------------------------------------
    def _work(self) -> None:
        """Admit new requests, decode one batch, hand out tokens; until stopped and idle."""
        if self.config.speculative != "off":
            self._spec.calibrate(self._slots[0])
        while True:
            with self._wake:
                while not self._inbox and not self.active and not self._closed:
                    self._wake.wait()
                if self._closed and not self._inbox and not self.active:
                    return
                new = list(self._inbox)
                self._inbox.clear()
            for ticket in new:
                self._admit(ticket)
            if self.active:
                try:
                    self._step()
                except Exception as e:  # a bug or llama.cpp failure: fail the batch, keep serving
                    for seq in list(self.active):
                        self._llama.forget(seq.slot)
                        self._end(seq, EngineError(f"llama.cpp generation failed: {e}"))
            self._flush()

    def _step(self) -> None:
        """One scheduling step: a token (plus a draft when alone) of every generating
        sequence and a bounded chunk of joining prompts, then sampling per sequence.

        Exact batching runs the step as several llama_decode calls whose row counts keep
        every row on the kernels it would get alone (shared/llm/batch.py); otherwise the
        whole step is one call, as llama-server does.
        """
        for seq in list(self.active):
            try:
                self._check(seq.ticket, len(seq.out))
            except (Cancelled, DeadlineExceeded) as e:
                self._end(seq, e)
        if not self.active:
            return
        decoding = [s for s in self.active if not s.pending]
        alone = len(self.active) == 1 and not self._inbox
        for seq in decoding:
            seq.draft = self._spec.draft(seq) if alone and seq.spec else []
        chunks = prompt_chunks(self.config, self.active, decoding, exact=self._exact)
        calls = exact_calls(self.config, decoding, chunks) if self._exact else [(decoding, chunks)]
        for call_decoding, call_chunks in calls:
            self._call(call_decoding, call_chunks, alone=alone)

    def _call(self, decoding: list[Seq], chunks: list[tuple[Seq, int]], *, alone: bool) -> None:
        """One llama_decode of these sequences' rows, then their next tokens."""
        llama, n = self._llama, 0
        for seq in decoding:
            seq.base = len(seq.slot.kv)
            seq.row = n
            n = llama.put(n, seq.slot, [seq.nxt, *seq.draft], logits_all=bool(seq.draft))
        for seq, k in chunks:
            done = k == len(seq.pending)
            seq.row = n + k - 1 if done else -1
            n = llama.put(n, seq.slot, seq.pending[:k], logits_all=False, logits_last=done)
        t_step = time.perf_counter()
        try:
            llama.decode(n)
        except RuntimeError as e:  # llama_decode failed: these sequences' cache is unknown
            for seq in [*decoding, *(s for s, _ in chunks)]:
                llama.forget(seq.slot)
                self._end(seq, EngineError(f"llama.cpp generation failed: {e}"))
            return
        dt = time.perf_counter() - t_step
        self._stats.step(len(decoding) + len(chunks))
        for seq in decoding:
            seq.slot.kv.extend([seq.nxt, *seq.draft])
        for seq, k in chunks:
            seq.slot.kv.extend(seq.pending[:k])
            seq.pending = seq.pending[k:]
        resync: list[Seq] = []
        for seq in decoding:
            verdict = self._spec.verify(seq, alone, dt, self._emit)
            if verdict == "resync":
                resync.append(seq)
            elif verdict == "end" or self._emit(seq, seq.nxt):
                self._end(seq)
        for seq, _ in chunks:
            if seq.pending:
                continue
            seq.t_prompt = time.monotonic()
            seq.nxt = self._sampling.choose(seq, seq.row)[0]
            if self._emit(seq, seq.nxt):
                self._end(seq)
        for seq in resync:  # recomputations reuse the batch: only after all logits were read
            self._spec.redo(seq, alone, dt)
            if self._emit(seq, seq.nxt):
                self._end(seq)

    # --- joining and leaving -------------------------------------------------------------------
    def _admit(self, ticket: Ticket) -> None:
        """Give a new request a free slot: the one whose cache shares most of its prompt."""
        req = ticket.request
        try:
            self._check(ticket, 0)
            prompt = self._prompts.tokens(req)
            if len(prompt) >= self._llama.n_ctx:
                raise EngineError(
                    f"prompt of {len(prompt)} tokens does not fit the context of {self._llama.n_ctx}",
                    detail={"input_tokens": len(prompt), "n_ctx": self._llama.n_ctx},
                )
            slot = pick_slot(self._slots, prompt)
            if slot is None:  # the loop side hands over at most `slots` requests
                raise EngineError(f"no free slot in {self.name} (internal error)")
            common = reusable(common_prefix(slot.kv, prompt), len(prompt), self.config.exact_min_chunk)
            if common < len(slot.kv):
                self._llama.truncate(slot, common)
            spec = self._spec.wants(req.speculative, len(prompt))
            greedy = self._sampling.is_greedy(req)
            seq = Seq(
                ticket=ticket, slot=slot, prompt=prompt, pending=prompt[len(slot.kv):],
                sampler=self._sampling.chain(req), stream=TextStream(list(req.stop), lambda p: self._push(ticket, p)),
                max_out=min(req.max_tokens, self._llama.n_ctx - len(prompt)), spec=spec,
                # Exact mode (speculation, greedy, no grammar): see Speculator.verify.
                exact=spec and greedy, greedy=greedy,
            )
            if spec:
                self._spec.start(seq)
        except BaseException as e:
            self._finish(ticket, Outcome(error=e))
            return
        slot.busy = True
        slot.last_used = time.monotonic()
        self.active.append(seq)

    def _check(self, ticket: Ticket, n_out: int) -> None:
        if ticket.cancel.is_set():
            raise Cancelled(f"request {ticket.request_id} cancelled after {n_out} tokens")
        dl = ticket.request.deadline
        if dl is not None and time.time() > dl:
            raise DeadlineExceeded(f"generation passed its deadline after {n_out} tokens")

    def _emit(self, seq: Seq, tok: int) -> bool:
        """Record one chosen token; True when the sequence is finished."""
        if self._llama.is_eog(tok):
            seq.finish = "stop"
            return True
        seq.out.append(tok)
        now = time.monotonic()
        seq.times.append(now)
        self._stats.token(now)
        if seq.hist is not None:
            seq.hist[len(seq.prompt) + len(seq.out) - 1] = tok
        if seq.stream.feed(self._llama.piece(tok)):
            seq.finish = "stop"
            return True
        if len(seq.out) >= seq.max_out:
            seq.finish = "length"
            return True
        return False

    def _end(self, seq: Seq, error: BaseException | None = None) -> None:
        """The sequence leaves: its slot (and the cache it filled) is free for the next."""
        if seq in self.active:
            self.active.remove(seq)
        seq.slot.busy = False
        seq.slot.last_used = time.monotonic()
        ticket = seq.ticket
        if error is not None:
            if isinstance(error, (Cancelled, DeadlineExceeded)):
                error.detail.update({"output_tokens": len(seq.out), "text": seq.stream.text})
                if ticket.cancelled_at is not None:
                    error.detail["tokens_after_cancel"] = sum(1 for t in seq.times if t > ticket.cancelled_at)
            self._finish(ticket, Outcome(error=error))
            return
        seq.stream.close()
        self._stats.last_resyncs = seq.resyncs
        n, times = len(seq.out), seq.times
        t_end = time.monotonic()
        ttft = (times[0] if times else (seq.t_prompt or t_end)) - ticket.submitted
        rate = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 0.0
        self._finish(ticket, Outcome(result=GenerationResult(
            text=seq.stream.text, model=self.name, input_tokens=len(seq.prompt), output_tokens=n,
            seconds=t_end - ticket.submitted, ttft_s=ttft, tokens_per_s=rate,
            finish_reason=seq.finish or "stop",  # type: ignore[arg-type]
            spec_acceptance=(seq.accepted / seq.drafted) if seq.drafted else None,
        )))

    # --- hand-offs to the event loops -------------------------------------------------------
    def _push(self, ticket: Ticket, piece: str) -> None:
        """Queue a text piece for the ticket's loop (delivered by ``_flush``)."""
        self._outgoing.append((ticket, piece))

    def _finish(self, ticket: Ticket, outcome: Outcome) -> None:
        self._outgoing.append((ticket, outcome))

    def _flush(self) -> None:
        """Hand this step's pieces and outcomes to their event loops, one wake-up per loop
        per step."""
        if not self._outgoing:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, Any]]] = {}
        for ticket, item in self._outgoing:
            if ticket.loop is not None and not ticket.loop.is_closed():
                by_loop.setdefault(ticket.loop, []).append((ticket, item))
        self._outgoing = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._deliver, items)
