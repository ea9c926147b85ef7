"""The server backend: a Qdrant server through qdrant-client (compose, k8s).

The embedder name and dimension live in the collection's own metadata on the server.
The same class also runs against qdrant-client's in-memory engine (``url=":memory:"``),
which the tests use to exercise this code path when no server is reachable.
"""

from __future__ import annotations

from typing import Any, cast

from qdrant_client import QdrantClient
from qdrant_client import models as m

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

_PAGE = 1000
_META_KEY = "syndicate"


def _filter(filters: SearchFilters | None, path: str | None = None) -> m.Filter | None:
    must: list[Any] = []
    if path is not None:
        must.append(m.FieldCondition(key="path", match=m.MatchValue(value=path)))
    if filters is not None:
        if filters.path_prefix:
            must.append(m.FieldCondition(key="path", match=m.MatchPrefix(prefix=filters.path_prefix)))
        if filters.language:
            must.append(m.FieldCondition(key="language", match=m.MatchValue(value=filters.language)))
        for tag in filters.tags:
            must.append(m.FieldCondition(key="tags", match=m.MatchValue(value=tag)))
    return m.Filter(must=must) if must else None


class ServerStore(ScrolledStore):
    backend = "qdrant-server"

    def __init__(self, url: str, *, api_key: str | None = None, timeout: int = 30, hnsw_ef: int | None = None) -> None:
        self.params = m.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
        self.url = url

    def collections(self) -> list[str]:
        """The syndicate's collections (others on a shared server are left alone)."""
        out = []
        for c in self.client.get_collections().collections:
            try:
                if self.meta(c.name) is not None:
                    out.append(c.name)
            except RetrievalError:
                continue
        return sorted(out)

    def meta(self, collection: str) -> CollectionMeta | None:
        if not self.client.collection_exists(collection):
            return None
        info = self.client.get_collection(collection)
        md = (info.config.metadata or {}).get(_META_KEY)
        if not md:
            raise RetrievalError(
                f"collection {collection!r} exists on the server but was not created by the syndicate",
                detail={"collection": collection},
            )
        return CollectionMeta.from_dict(md)

    def create(self, collection: str, meta: CollectionMeta) -> None:
        self.client.create_collection(
            collection,
            vectors_config={DENSE: m.VectorParams(size=meta.dim, distance=m.Distance.COSINE)},
            sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            metadata={_META_KEY: meta.to_dict()},
        )
        if self.url == ":memory:":
            return  # the in-memory engine scans payloads; it has no payload indexes
        self.client.create_payload_index(
            collection, "path", m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, prefix=True)
        )
        for key in ("language", "tags"):
            self.client.create_payload_index(collection, key, m.PayloadSchemaType.KEYWORD)

    def drop(self, collection: str) -> None:
        self.client.delete_collection(collection)

    def count(self, collection: str) -> int:
        return self.client.count(collection, exact=True).count

    def upsert(self, collection: str, points: list[StoredPoint]) -> None:
        if not points:
            return
        self.client.upsert(
            collection,
            [
                m.PointStruct(
                    id=p.id,
                    vector={DENSE: p.dense, SPARSE: m.SparseVector(indices=p.sparse[0], values=p.sparse[1])},
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, collection: str, ids: list[str]) -> None:
        if ids:
            self.client.delete(collection, m.PointIdsList(points=list(ids)), wait=True)

    def delete_paths(self, collection: str, paths: list[str]) -> None:
        if paths:
            cond = m.FieldCondition(key="path", match=m.MatchAny(any=list(paths)))
            self.client.delete(collection, m.FilterSelector(filter=m.Filter(must=[cond])), wait=True)

    def optimize(self, collection: str) -> None:
        """The server indexes in the background: nothing to do."""

    def _scroll(self, collection: str, flt: m.Filter | None, payload: Any, vectors: bool) -> list[Any]:
        out: list[Any] = []
        offset = None
        while True:
            records, offset = self.client.scroll(
                collection, scroll_filter=flt, limit=_PAGE, offset=offset, with_payload=payload, with_vectors=vectors
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
        if sparse is None or not sparse[0]:
            res = self.client.query_points(
                collection, query=dense, using=DENSE, query_filter=flt, limit=limit, with_payload=True,
                search_params=self.params,
            )
        else:
            n = limit * PREFETCH_FACTOR
            res = self.client.query_points(
                collection,
                prefetch=[
                    m.Prefetch(query=dense, using=DENSE, limit=n, filter=flt, params=self.params),
                    m.Prefetch(
                        query=m.SparseVector(indices=sparse[0], values=sparse[1]), using=SPARSE, limit=n, filter=flt
                    ),
                ],
                query=m.RrfQuery(rrf=m.Rrf(k=RRF_K)),
                limit=limit,
                with_payload=True,
                with_vectors=[DENSE],
            )
        return [
            StoredHit(
                str(p.id), float(p.score), dict(p.payload or {}),
                # The DENSE slot is a plain dense vector (the stub types every named slot as
                # dense | sparse | multi-vector).
                list(cast("list[float]", p.vector[DENSE])) if isinstance(p.vector, dict) and DENSE in p.vector else None,
            )
            for p in res.points
        ]

    def close(self) -> None:
        self.client.close()
