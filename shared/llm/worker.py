"""The worker thread: it alone touches the llama.cpp context, and runs the step loop.

Each step admits new requests into free slots, decodes one batch (``_call``: the next
token of every generating sequence plus prompt chunks of joining ones, shared/llm/batch.py),
chooses each sequence's next token, and hands the step's text pieces and results to the
event loops in one wake-up per loop (a wake-up per token would put the loop thread on the
cores the decode threads are using once per token; shared/llm/handoff.py says why the
wake-up never makes the worker wait for the loop). A finished,
cancelled or timed-out sequence leaves at the next step and frees its slot while the
others continue; a running request is stopped before its next decode step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from shared.errors import Cancelled, DeadlineExceeded, EngineError
from shared.llm.base import GenerationResult
from shared.llm.batch import exact_calls, prompt_chunks
from shared.llm.queue import Outcome, Ticket
from shared.llm.sequence import Seq, TextStream
from shared.llm.slots import Slot, place, usable

if TYPE_CHECKING:
    from shared.llm.config import EngineConfig
    from shared.llm.context import ModelContext
    from shared.llm.handoff import LoopWaker
    from shared.llm.prompt import PromptRenderer
    from shared.llm.sampling import Sampling
    from shared.llm.speculator import Speculator
    from shared.llm.tracing import EngineStats


class Worker:
    """The step loop over ``slots`` sequences of one model (see the module docstring)."""

    def __init__(self, config: EngineConfig, llama: ModelContext, slots: list[Slot], prompts: PromptRenderer,
                 sampling: Sampling, spec: Speculator, stats: EngineStats, *, exact: bool) -> None:
        self.config, self.name = config, config.name
        self._llama, self._slots, self._prompts = llama, slots, prompts
        self._sampling, self._spec, self._stats = sampling, spec, stats
        self._exact = exact
        self.active: list[Seq] = []  # worker thread only
        self.waiting: list[Seq] = []  # admitted, waiting for a prefix another sequence evaluates
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
                while not self._inbox and not self.active and not self.waiting and not self._closed:
                    self._wake.wait()
                if self._closed and not self._inbox and not self.active and not self.waiting:
                    return
                new = list(self._inbox)
                self._inbox.clear()
            t_busy = time.perf_counter()
            for ticket in new:
                self._admit(ticket)
            if self.active or self.waiting:
                try:
                    self._step()
                    self._resolve()
                except Exception as e:  # a bug or llama.cpp failure: fail the batch, keep serving
                    for seq in [*self.active, *self.waiting]:
                        self._llama.forget(seq.slot)
                        self._end(seq, EngineError(f"llama.cpp generation failed: {e}"))
            self._flush()
            self._stats.time["worker_busy_s"] += time.perf_counter() - t_busy

    def _step(self) -> None:
        """One scheduling step: a token (plus a draft when alone) of every generating
        sequence and a bounded chunk of joining prompts, then sampling per sequence.

        Exact batching runs the step as several llama_decode calls whose row counts keep
        every row on the kernels it would get alone (shared/llm/batch.py); otherwise the
        whole step is one call, as llama-server does.
        """
        for seq in [*self.active, *self.waiting]:
            try:
                self._check(seq.ticket, len(seq.out))
            except (Cancelled, DeadlineExceeded) as e:
                self._end(seq, e)
        if not self.active:
            return
        decoding = [s for s in self.active if not s.pending]
        alone = len(self.active) == 1 and not self.waiting and not self._inbox
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
        self._stats.step(len(decoding) + len(chunks), dt, bool(chunks))
        for seq in decoding:
            seq.slot.kv.extend([seq.nxt, *seq.draft])
        for seq, k in chunks:
            seq.slot.kv.extend(seq.pending[:k])
            seq.slot.prompt_end = len(seq.slot.kv)
            seq.pending = seq.pending[k:]
            self._stats.prompt["prompt_tokens_evaluated"] += k
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
            seq.slot.prompt_done(llama.logits_row(seq.row).copy())  # for requests of the same prompt
            seq.nxt = self._sampling.choose(seq, seq.row)[0]
            if self._emit(seq, seq.nxt):
                self._end(seq)
        for seq in resync:  # recomputations reuse the batch: only after all logits were read
            self._spec.redo(seq, alone, dt)
            if self._emit(seq, seq.nxt):
                self._end(seq)

    # --- joining and leaving -------------------------------------------------------------------
    def _admit(self, ticket: Ticket) -> None:
        """Give a new request a free slot and the longest cached prefix of its prompt
        (shared/llm/slots.py): it starts now, or once the sequence evaluating that prefix has."""
        req, cfg = ticket.request, self.config
        try:
            self._check(ticket, 0)
            prompt = self._prompts.tokens(req)
            if len(prompt) >= self._llama.n_ctx:
                raise EngineError(
                    f"prompt of {len(prompt)} tokens does not fit the context of {self._llama.n_ctx}",
                    detail={"input_tokens": len(prompt), "n_ctx": self._llama.n_ctx},
                )
            where = place(self._slots, {s.slot: s for s in self.active}, prompt, min_eval=cfg.exact_min_chunk,
                          min_copy=cfg.share_min_tokens, exact=self._exact)
            if where is None:  # the loop side hands over at most `slots` requests
                raise EngineError(f"no free slot in {self.name} (internal error)")
            spec = self._spec.wants(req.speculative, len(prompt))
            greedy = self._sampling.is_greedy(req)
            seq = Seq(
                ticket=ticket, slot=where.slot, prompt=prompt, pending=prompt,
                sampler=self._sampling.chain(req), stream=TextStream(list(req.stop), lambda p: self._push(ticket, p)),
                max_out=min(req.max_tokens, self._llama.n_ctx - len(prompt)), spec=spec,
                # Exact mode (speculation, greedy, no grammar): see Speculator.verify.
                exact=spec and greedy, greedy=greedy, wait=where.wait, share=where.share,
            )
            if spec:
                self._spec.start(seq)
        except BaseException as e:
            if isinstance(e, (Cancelled, DeadlineExceeded)):  # as for a running request
                e.detail.update({"output_tokens": 0, "text": ""})
            self._finish(ticket, Outcome(error=e))
            return
        seq.slot.busy = True
        seq.slot.last_used = time.monotonic()
        if seq.wait is not None:
            self._llama.forget(seq.slot)  # it will hold a copy
            self.waiting.append(seq)
        else:
            self._start(seq, where.source)

    def _start(self, seq: Seq, source: Slot | None) -> None:
        """Take the prompt's cached prefix — in place, or copied from ``source`` when that
        saves at least ``share_min_tokens`` — and join the step loop. A prompt cached
        whole with its logits evaluates nothing: its first token is chosen now."""
        llama, slot, prompt, cfg = self._llama, seq.slot, seq.prompt, self.config
        have = usable(slot, prompt, cfg.exact_min_chunk, self._exact)
        copy = 0 if source is None else usable(source, prompt, cfg.exact_min_chunk, self._exact)
        if copy >= have + cfg.share_min_tokens:
            assert source is not None
            llama.copy(source, slot, copy)
            self._stats.prompt["prompt_tokens_copied"] += copy
            self._stats.prompt["kv_copies"] += 1
        else:
            if have < len(slot.kv):
                llama.truncate(slot, have)
            self._stats.prompt["prompt_tokens_reused"] += have
        seq.wait = None
        seq.pending = prompt[len(slot.kv):]
        self.active.append(seq)
        if not seq.pending:
            seq.t_prompt = time.monotonic()
            try:
                seq.nxt = self._sampling.choose_saved(seq, slot.logits)
            except Exception as e:
                self._end(seq, EngineError(f"sampling failed: {e}"))
                return
            if self._emit(seq, seq.nxt):
                self._end(seq)

    def _resolve(self) -> None:
        """Start the waiting sequences whose prefix is now cached (or whose source left:
        they take what its slot holds and evaluate the rest themselves)."""
        for seq in list(self.waiting):
            src = seq.wait
            assert src is not None
            if src in self.active and len(src.slot.kv) < seq.share:
                continue
            self.waiting.remove(seq)
            self._start(seq, src.slot)

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
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.slot.busy = False
        seq.slot.last_used = time.monotonic()
        ticket = seq.ticket
        if error is not None:
            if isinstance(error, (Cancelled, DeadlineExceeded)):
                error.detail.update({"input_tokens": len(seq.prompt), "output_tokens": len(seq.out), "text": seq.stream.text})
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
        by_loop: dict[LoopWaker, list[tuple[Ticket, Any]]] = {}
        for ticket, item in self._outgoing:
            if ticket.waker is not None and not ticket.waker.loop.is_closed():
                by_loop.setdefault(ticket.waker, []).append((ticket, item))
        self._outgoing = []
        for waker, items in by_loop.items():
            waker.send(items)
