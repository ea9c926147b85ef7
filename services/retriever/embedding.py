"""Text embedders behind one small interface.

``Embedder.embed(texts)`` returns one L2-normalised vector per text. The default is
all-MiniLM-L6-v2 in llama.cpp (384 dims); ``HashingEmbedder`` is a deterministic,
model-free stand-in for unit tests only (it knows no semantics beyond shared words).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from shared.errors import ModelUnavailable

Vector = list[float]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...


class LlamaEmbedder:
    """A GGUF embedding model run by llama.cpp, one call per text.

    One call per text: ``Llama.embed(list)`` packs the texts into one batch and is about
    twice as slow per text here. n_ctx/n_batch never exceed 512 (the BERT graph aborts
    the process above its position table), and texts are truncated to ``max_tokens``.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        name: str,
        dim: int,
        threads: int = 1,
        max_tokens: int = 256,
    ) -> None:
        # Spinning OpenMP workers collapse throughput when processes share cores.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import llama_cpp
        except ImportError as exc:  # the llm/retriever extra is missing
            raise ModelUnavailable("llama-cpp-python is not installed") from exc
        n_ctx = min(512, max(16, max_tokens))
        self.name = name
        self.dim = dim
        self.max_tokens = n_ctx
        self._lock = threading.Lock()  # one llama context: never used from two threads
        self._llm = llama_cpp.Llama(
            str(model_path),
            embedding=True,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        got = self._llm.n_embd()
        if got != dim:
            raise ModelUnavailable(f"{model_path} has {got} dimensions, expected {dim}")

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embed each text (truncated to the model's window), normalised."""
        with self._lock:
            return [self._llm.embed(self._fit(t), normalize=True) for t in texts]

    def _fit(self, text: str) -> str:
        """Cut a text to the window keeping the closing [SEP], as sentence-transformers does
        (llama-cpp-python's own truncation drops it)."""
        text = text or " "
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) + 2 <= self.max_tokens:
            return text
        kept = self._llm.detokenize(tokens[: self.max_tokens - 2])
        return kept.decode("utf-8", errors="ignore")

    def close(self) -> None:
        self._llm.close()


_WORD = re.compile(r"[A-Za-z0-9_]+")


class HashingEmbedder:
    """Deterministic bag-of-words feature hashing (unit tests only, no semantics)."""

    def __init__(self, dim: int = 64, name: str = "hashing") -> None:
        self.name = f"{name}-{dim}"
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        out: list[Vector] = []
        for text in texts:
            v = [0.0] * self.dim
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = math.sqrt(sum(x * x for x in v))
            if norm == 0.0:
                v[0], norm = 1.0, 1.0  # empty text still gets a valid unit vector
            out.append([x / norm for x in v])
        return out


def load_embedder(kind: str = "minilm", *, threads: int = 1) -> Embedder:
    """Build the configured embedder: ``minilm`` (default) or ``hashing`` (tests)."""
    if kind == "hashing":
        return HashingEmbedder()
    if kind == "minilm":
        from services.retriever import minilm

        return LlamaEmbedder(
            minilm.ensure_gguf(),
            name=minilm.MODEL_NAME,
            dim=minilm.DIM,
            threads=threads,
            max_tokens=minilm.MAX_TOKENS,
        )
    raise ModelUnavailable(f"unknown embedder {kind!r} (minilm | hashing)")
