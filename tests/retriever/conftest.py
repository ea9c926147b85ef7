"""Retriever fixtures: the real MiniLM embedder (session), and a VectorStore per backend:
embedded Qdrant (qdrant-edge), the server backend's code against qdrant-client's
in-memory engine, and a real Qdrant server when SYNDICATE_QDRANT_URL reaches one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from services.retriever.embedding import Embedder, load_embedder
from services.retriever.store import VectorStore

BACKENDS = ["edge", "client-memory", "server"]


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The production embedder. Fails (does not skip) when the model package is missing."""
    return load_embedder("minilm", threads=1)


class MemoEmbedder:
    """Wraps an embedder and remembers vectors, so several backends embed a corpus once."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.memo: dict[str, list[float]] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        for t, v in zip(todo, self.inner.embed(todo), strict=True):
            self.memo[t] = v
        return [self.memo[t] for t in texts]


@pytest.fixture(scope="session")
def memo_minilm(minilm: Embedder) -> MemoEmbedder:
    return MemoEmbedder(minilm)


def _server_url() -> str | None:
    url = os.environ.get("SYNDICATE_QDRANT_URL")
    if not url:
        return None
    from qdrant_client import QdrantClient

    try:
        QdrantClient(url=url, timeout=2).get_collections()
    except Exception:
        return None
    return url


def open_backend(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "edge":
        from services.retriever.store_edge import EdgeStore

        return EdgeStore(tmp_path / f"qdrant-{uuid.uuid4().hex[:6]}")
    from services.retriever.store_server import ServerStore

    if kind == "client-memory":
        return ServerStore(":memory:")
    url = _server_url()
    if url is None:
        pytest.skip("no Qdrant server reachable: set SYNDICATE_QDRANT_URL (compose runs one)")
    return ServerStore(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = open_backend(request.param, tmp_path)
    created_before = set(s.collections())
    yield s
    for name in set(s.collections()) - created_before:  # a real server outlives the test
        s.drop(name)
    s.close()


def unique(name: str) -> str:
    """Collection names unique per test, so a shared server never mixes runs."""
    return f"t-{name}-{uuid.uuid4().hex[:8]}"
