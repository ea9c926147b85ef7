"""The llama.cpp side of one engine: the model, its context (one KV stream per slot), the
raw ``llama_batch`` a step fills, and the cache operations the scheduler needs.

Only the engine's worker thread touches a ``ModelContext`` after loading. llama.cpp itself
is imported by ``import_llama_cpp`` alone, so services without a model never load it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import ModelUnavailable

if TYPE_CHECKING:
    from shared.llm.config import EngineConfig
    from shared.llm.slots import Slot


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


_BACKEND = threading.Lock()
_backend_ready = False


def _backend_init(lc: Any) -> None:
    """llama_backend_init once per process (what ``Llama()`` does on first use)."""
    global _backend_ready
    with _BACKEND:
        if not _backend_ready:
            lc.llama_backend_init()
            _backend_ready = True


class ModelContext:
    """A loaded model and its context: ``slots`` KV streams of ``n_ctx`` cells each
    (``kv_unified=false``), repacked weights unless ``repack`` is False (exact batching)."""

    def __init__(self, config: EngineConfig, threads: int, *, repack: bool) -> None:
        lc = import_llama_cpp()
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        self.lc, self.internals = lc, _internals
        set_verbose(False)
        _backend_init(lc)
        path = Path(config.model_path)
        try:
            mp = lc.llama_model_default_params()
            mp.use_extra_bufts = repack
            self.model = _internals.LlamaModel(path_model=str(path), params=mp, verbose=False)
            cp = lc.llama_context_default_params()
            cp.n_ctx = config.n_ctx * config.slots
            cp.n_batch = cp.n_ubatch = config.n_batch
            cp.n_seq_max = config.slots
            cp.kv_unified = False  # one KV stream per slot: exact batching, n_ctx each
            cp.n_threads = cp.n_threads_batch = threads
            cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama() sets it
            self.ctx = _internals.LlamaContext(model=self.model, params=cp, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {e}") from e
        self.vocab = self.model.vocab
        self.mem = self.ctx.memory
        self.batch = _internals.LlamaBatch(n_tokens=config.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx = int(lc.llama_n_ctx_seq(self.ctx.ctx))  # per slot
        self.n_vocab = self.model.n_vocab()
        self._pieces: dict[int, bytes] = {}

    # --- the batch ----------------------------------------------------------------------
    def put(self, n: int, slot: Slot, tokens: list[int], *, logits_all: bool, logits_last: bool = True) -> int:
        """Append ``tokens`` of ``slot``'s sequence to the raw llama_batch at row ``n``."""
        b = self.batch.batch
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

    def decode(self, n_rows: int) -> None:
        """One llama_decode of the first ``n_rows`` rows (RuntimeError when it fails)."""
        self.batch.batch.n_tokens = n_rows
        self.ctx.decode(self.batch)

    def decode_alone(self, slot: Slot, tokens: list[int]) -> None:
        """Decode ``tokens`` of one sequence in a batch of their own (logits for the last)."""
        self.decode(self.put(0, slot, tokens, logits_all=False))
        slot.kv.extend(tokens)

    def logits_row(self, i: int) -> Any:
        """Logits row ``i`` of the last decode, as a numpy view (no copy)."""
        import numpy as np

        return np.ctypeslib.as_array(self.ctx.get_logits_ith(i), shape=(self.n_vocab,))

    # --- the KV cache ---------------------------------------------------------------------
    def truncate(self, slot: Slot, keep: int) -> None:
        """Keep the first ``keep`` cached tokens of ``slot`` (all dropped if llama.cpp refuses)."""
        if not self.lc.llama_memory_seq_rm(self.mem, slot.seq_id, keep, -1):
            self.forget(slot)
            return
        slot.cut(keep)

    def forget(self, slot: Slot) -> None:
        """Drop a slot's whole cache (its contents are unknown or unwanted)."""
        self.lc.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
        slot.cut(0)

    def copy(self, src: Slot, dst: Slot, keep: int) -> None:
        """Make ``dst`` hold the first ``keep`` tokens of ``src``'s cache. Streams differ, so
        llama.cpp copies the whole stream buffer (at the start of the next llama_decode,
        before that call computes anything) and then ``dst`` is cut to ``keep``."""
        self.lc.llama_memory_seq_cp(self.mem, src.seq_id, dst.seq_id, -1, -1)
        dst.kv[:] = src.kv
        dst.prompt_end, dst.logits, dst.logits_at = src.prompt_end, src.logits, src.logits_at
        self.truncate(dst, keep)

    def clear(self) -> None:
        """Empty every stream of the cache (the callers' slot lists must follow)."""
        self.ctx.kv_cache_clear()

    # --- tokens ---------------------------------------------------------------------------
    def is_eog(self, tok: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, tok))

    def piece(self, tok: int) -> bytes:
        """The bytes of one token (cached)."""
        piece = self._pieces.get(tok)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = self.lc.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
            piece = buf.raw[: max(n, 0)]
            self._pieces[tok] = piece
        return piece

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()
