"""The embedded backend: Qdrant's engine in-process (qdrant-edge-py), one shard per collection.

A shard directory may be opened by one process only; an exclusive lock on the store's
root makes a second retriever on the same state folder fail at start with a clear
error instead of corrupting data.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
from pathlib import Path
from typing import Any, cast

import qdrant_edge as qe

from services.retriever.store import (
    DENSE,
    PREFETCH_FACTOR,
    RRF_K,
    SPARSE,
    CollectionMeta,
    ScrolledStore,
    StoredHit,
    StoredPoint,
)
from shared.contracts import SearchFilters
from shared.errors import RetrievalError

META_FILE = "syndicate-collection.json"
_PAGE = 1000


def check_name(collection: str) -> str:
    """Collection names become directory names: refuse anything path-like."""
    if not collection or collection.startswith(".") or "/" in collection or "\\" in collection:
        raise RetrievalError(f"invalid collection name {collection!r}")
    return collection


def _filter(filters: SearchFilters | None, path: str | None = None) -> qe.Filter | None:
    must: list[Any] = []
    if path is not None:
        must.append(qe.FieldCondition(key="path", match=qe.MatchValue(path)))
    if filters is not None:
        if filters.path_prefix:
            must.append(qe.FieldCondition(key="path", match=qe.MatchPrefix(filters.path_prefix)))
        if filters.language:
            must.append(qe.FieldCondition(key="language", match=qe.MatchValue(filters.language)))
        for tag in filters.tags:  # every tag must be present
            must.append(qe.FieldCondition(key="tags", match=qe.MatchValue(tag)))
    return qe.Filter(must=must) if must else None


def _dense(vector: Any) -> list[float] | None:
    return list(vector[DENSE]) if isinstance(vector, dict) and DENSE in vector else None


class EdgeStore(ScrolledStore):
    backend = "qdrant-edge"

    def __init__(self, root: Path, *, hnsw_ef: int | None = None) -> None:
        self.root = Path(root)
        # HNSW beam width at search time (None: the engine's default); higher = better recall.
        self.hnsw_ef = hnsw_ef
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = (self.root / ".lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise RetrievalError(
                f"{self.root} is in use by another process (the embedded Qdrant allows one "
                "process per shard: give each retriever its own state folder, or use a Qdrant server)",
                detail={"path": str(self.root)},
            ) from exc
        self._shards: dict[str, qe.EdgeShard] = {}
        self._guard = threading.Lock()

    # --- collections -------------------------------------------------------------
    def _dir(self, collection: str) -> Path:
        return self.root / check_name(collection)

    def collections(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{META_FILE}"))

    def meta(self, collection: str) -> CollectionMeta | None:
        f = self._dir(collection) / META_FILE
        if not f.is_file():
            return None
        return CollectionMeta.from_dict(json.loads(f.read_text()))

    def create(self, collection: str, meta: CollectionMeta) -> None:
        d = self._dir(collection)
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=meta.dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        with self._guard:
            shard = qe.EdgeShard.create(str(d), config)
            shard.update(qe.UpdateOperation.create_field_index("path", qe.KeywordIndexParams(prefix=True)))
            for key in ("language", "tags"):
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            # The metadata file is written last: its presence marks a complete collection.
            (d / META_FILE).write_text(json.dumps(meta.to_dict()))
            self._shards[collection] = shard

    def drop(self, collection: str) -> None:
        with self._guard:
            shard = self._shards.pop(collection, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._dir(collection), ignore_errors=True)

    def _shard(self, collection: str) -> qe.EdgeShard:
        shard = self._shards.get(collection)
        if shard is not None:
            return shard
        with self._guard:
            if collection not in self._shards:
                if self.meta(collection) is None:
                    raise RetrievalError(f"no collection {collection!r}", detail={"collection": collection})
                self._shards[collection] = qe.EdgeShard.load(str(self._dir(collection)))
            return self._shards[collection]

    def count(self, collection: str) -> int:
        return self._shard(collection).count(qe.CountRequest(exact=True))

    # --- writes --------------------------------------------------------------------
    def upsert(self, collection: str, points: list[StoredPoint]) -> None:
        if not points:
            return
        shard = self._shard(collection)
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(p.id, {DENSE: p.dense, SPARSE: qe.SparseVector(*p.sparse)}, p.payload)
                    for p in points
                ]
            )
        )

    def delete(self, collection: str, ids: list[str]) -> None:
        if ids:
            self._shard(collection).update(qe.UpdateOperation.delete_points(list(ids)))

    def delete_paths(self, collection: str, paths: list[str]) -> None:
        if paths:
            cond = qe.FieldCondition(key="path", match=qe.MatchAny(list(paths)))
            self._shard(collection).update(qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[cond])))

    def optimize(self, collection: str) -> None:
        shard = self._shard(collection)
        shard.optimize()
        shard.flush()

    # --- reads ---------------------------------------------------------------------
    def _scroll(self, collection: str, flt: qe.Filter | None, payload: Any, vectors: bool) -> list[Any]:
        shard = self._shard(collection)
        out: list[Any] = []
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=_PAGE, filter=flt, with_payload=payload, with_vector=vectors)
            )
            out.extend(records)
            if offset is None:
                return out

    def _path_filter(self, path: str) -> Any:
        return _filter(None, path)

    def search(
        self,
        collection: str,
        dense: list[float],
        sparse: tuple[list[int], list[float]] | None,
        limit: int,
        filters: SearchFilters,
    ) -> list[StoredHit]:
        flt = _filter(filters)
        dense_q = qe.Query.Nearest(dense, using=DENSE)
        params = qe.SearchParams(hnsw_ef=self.hnsw_ef) if self.hnsw_ef else None
        if sparse is None or not sparse[0]:
            req = qe.QueryRequest(limit=limit, query=dense_q, filter=flt, with_payload=True, params=params)
        else:
            n = limit * PREFETCH_FACTOR
            req = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=n, query=dense_q, filter=flt, params=params),
                    qe.Prefetch(limit=n, query=qe.Query.Nearest(qe.SparseVector(*sparse), using=SPARSE), filter=flt),
                ],
                # The stub declares Fusion.Rrf as a plain nested class; at run time it is a
                # Fusion variant (pyo3 complex enum), which is what QueryRequest takes.
                query=cast(qe.Fusion, qe.Fusion.Rrf(k=RRF_K)),
                with_payload=True,
                with_vector=[DENSE],
            )
        return [
            StoredHit(str(p.id), float(p.score), dict(p.payload or {}), _dense(p.vector))
            for p in self._shard(collection).query(req)
        ]

    def close(self) -> None:
        with self._guard:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
