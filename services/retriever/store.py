"""Vector storage behind one interface, with two Qdrant backends.

* ``EdgeStore`` (default): Qdrant's engine in-process (``qdrant-edge-py``), one shard
  directory per collection under ``state_dir/qdrant``. Nothing optimises in the
  background there, so the owner calls ``optimize`` after bulk writes.
* ``ServerStore``: a Qdrant server through ``qdrant-client`` (``SYNDICATE_QDRANT_URL``).

Both live in their own modules and build on this one; the service picks one
(``services/retriever/main.py: open_store``).

Each collection holds a dense vector ``dense`` (cosine) and a sparse BM25 vector
``bm25`` (IDF applied by the engine), and records which embedder filled it
(``CollectionMeta``), so a query with another model fails with ``CollectionMismatch``
instead of returning nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.contracts import SearchFilters

DENSE = "dense"
SPARSE = "bm25"
# Payload fields every point carries.
PAYLOAD_FIELDS = ("path", "start_line", "end_line", "text", "language", "tags", "title", "file_hash")


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection was built with; stored with the collection."""

    embedder: str
    dim: int
    chunker: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"embedder": self.embedder, "dim": self.dim, "chunker": self.chunker}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionMeta:
        return cls(embedder=str(d["embedder"]), dim=int(d["dim"]), chunker=int(d.get("chunker", 1)))


@dataclass
class StoredPoint:
    id: str
    dense: list[float]
    sparse: tuple[list[int], list[float]]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredHit:
    id: str
    score: float  # cosine for dense search, the fused RRF score for hybrid search
    payload: dict[str, Any]
    dense: list[float] | None = None  # returned with hybrid search, to report a cosine


class VectorStore(Protocol):
    """Collections of chunks with dense + sparse vectors and a payload."""

    backend: str

    def collections(self) -> list[str]: ...

    def meta(self, collection: str) -> CollectionMeta | None:
        """The collection's metadata, or None when the collection does not exist."""
        ...

    def create(self, collection: str, meta: CollectionMeta) -> None: ...

    def drop(self, collection: str) -> None: ...

    def count(self, collection: str) -> int: ...

    def upsert(self, collection: str, points: list[StoredPoint]) -> None: ...

    def delete(self, collection: str, ids: list[str]) -> None: ...

    def delete_paths(self, collection: str, paths: list[str]) -> None: ...

    def points_for_path(self, collection: str, path: str, *, with_vectors: bool) -> dict[str, StoredPoint]:
        """Every point of one file (vectors left empty unless asked for)."""
        ...

    def paths(self, collection: str) -> dict[str, str]:
        """path -> file_hash for every file in the collection."""
        ...

    def search(
        self,
        collection: str,
        dense: list[float],
        sparse: tuple[list[int], list[float]] | None,
        limit: int,
        filters: SearchFilters,
    ) -> list[StoredHit]:
        """Nearest chunks; with ``sparse`` the dense and BM25 rankings are fused (RRF) and
        each hit carries its dense vector."""
        ...

    def optimize(self, collection: str) -> None: ...

    def close(self) -> None: ...


RRF_K = 60  # the usual reciprocal-rank-fusion constant
PREFETCH_FACTOR = 4  # each ranking contributes this many candidates per requested hit


class ScrolledStore:
    """``points_for_path`` and ``paths`` for backends that page through a collection;
    a backend supplies ``_scroll`` and its own filter type through ``_path_filter``."""

    def _scroll(self, collection: str, flt: Any, payload: Any, vectors: bool) -> list[Any]:
        raise NotImplementedError

    def _path_filter(self, path: str) -> Any:
        raise NotImplementedError

    def points_for_path(self, collection: str, path: str, *, with_vectors: bool) -> dict[str, StoredPoint]:
        out: dict[str, StoredPoint] = {}
        for r in self._scroll(collection, self._path_filter(path), True, with_vectors):
            vec = r.vector if isinstance(r.vector, dict) else {}
            sp = vec.get(SPARSE)
            sparse = (list(sp.indices), list(sp.values)) if sp is not None else ([], [])
            out[str(r.id)] = StoredPoint(str(r.id), list(vec.get(DENSE) or []), sparse, dict(r.payload or {}))
        return out

    def paths(self, collection: str) -> dict[str, str]:
        return {
            r.payload["path"]: r.payload.get("file_hash", "")
            for r in self._scroll(collection, None, ["path", "file_hash"], False)
        }
