"""The retriever's logic without the bus: ingest documents, search, embed.

``DocumentIndex`` joins the chunker, the embedder, BM25 sparse vectors and a
``VectorStore``. Re-ingesting is cheap and idempotent: a file whose content hash is
already stored is skipped; an edited file keeps the vectors of its unchanged chunks
(ids derive from path + content), embeds only new chunks, and loses its stale ones.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from services.retriever.chunking import CHUNKER_VERSION, Chunk, chunk_document
from services.retriever.embedding import Embedder, Vector
from services.retriever.store import CollectionMeta, StoredPoint, VectorStore
from shared.contracts import IngestReply, IngestRequest, SearchHit, SearchReply, SearchRequest
from shared.errors import CollectionMismatch, RetrievalError

ProgressCallback = Callable[[int, int], None]  # (documents done, chunks written so far)


def under_root(path: str, root: str) -> bool:
    """Whether ``path`` lies under the ingest root (``.``: every relative path)."""
    root = root.rstrip("/")
    if root in ("", "."):
        return not path.startswith("/")
    return path == root or path.startswith(root + "/")


def _cosine(a: Vector, b: Vector) -> float:
    """Both vectors are unit length: the dot product is the cosine."""
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


class DocumentIndex:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        *,
        hybrid: bool = True,
        max_chars: int = 1000,
        overlap_lines: int = 2,
        embed_batch: int = 16,
        upsert_batch: int = 256,
    ) -> None:
        from qdrant_edge import Bm25  # Qdrant's own BM25 tokenizer/stemmer, in-process

        self.store = store
        self.embedder = embedder
        self.hybrid = hybrid
        self.max_chars = max_chars
        self.overlap_lines = overlap_lines
        self.embed_batch = embed_batch
        self.upsert_batch = upsert_batch
        self._bm25 = Bm25()
        self._write = threading.Lock()
        self._dirty: dict[str, float] = {}  # collection -> monotonic time of the last write

    # --- collections ------------------------------------------------------------------
    def _meta(self) -> CollectionMeta:
        return CollectionMeta(embedder=self.embedder.name, dim=self.embedder.dim, chunker=CHUNKER_VERSION)

    def _check(self, collection: str, *, create: bool) -> None:
        meta = self.store.meta(collection)
        if meta is None:
            if not create:
                raise RetrievalError(
                    f"no collection {collection!r}: ingest documents into it first",
                    detail={"collection": collection, "collections": self.store.collections()},
                )
            self.store.create(collection, self._meta())
            return
        if meta.embedder != self.embedder.name or meta.dim != self.embedder.dim:
            raise CollectionMismatch(
                f"collection {collection!r} was built with {meta.embedder} ({meta.dim} dims); "
                f"this retriever embeds with {self.embedder.name} ({self.embedder.dim} dims). "
                "Re-ingest into a new collection or run the retriever with the original model.",
                detail={
                    "collection": collection,
                    "collection_embedder": meta.embedder,
                    "collection_dim": meta.dim,
                    "embedder": self.embedder.name,
                    "dim": self.embedder.dim,
                },
            )

    # --- embedding ----------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Dense vectors in batches (the embedder lock is released between batches)."""
        out: list[Vector] = []
        for i in range(0, len(texts), self.embed_batch):
            out.extend(self.embedder.embed(texts[i : i + self.embed_batch]))
        return out

    def _sparse(self, text: str, *, query: bool) -> tuple[list[int], list[float]]:
        sv = self._bm25.embed_query(text) if query else self._bm25.embed_document(text)
        return list(sv.indices), list(sv.values)

    # --- ingest -------------------------------------------------------------------------
    def _file_hash(self, content: str, tags: list[str]) -> str:
        key = f"{CHUNKER_VERSION}|{self.max_chars}|{self.overlap_lines}|{','.join(sorted(tags))}|"
        return hashlib.sha256(key.encode() + content.encode("utf-8")).hexdigest()

    def ingest(self, request: IngestRequest, progress: ProgressCallback | None = None) -> IngestReply:
        """Chunk, embed and store the request's documents; prune deleted files if asked."""
        t0 = time.perf_counter()
        collection = request.collection
        reply = IngestReply(job_id=request.job_id, collection=collection, batch=request.batch)
        with self._write:
            self._check(collection, create=True)
            pending: list[StoredPoint] = []
            for n, doc in enumerate(request.documents, 1):
                if "\x00" in doc.content:
                    reply.skipped.append(f"{doc.path}: binary content")
                    continue
                written, removed = self._ingest_one(collection, doc.path, doc.content, doc.tags, pending)
                reply.files += 1
                reply.chunks += written
                reply.removed += removed
                if len(pending) >= self.upsert_batch:
                    self.store.upsert(collection, pending)
                    pending = []
                if progress is not None:
                    progress(n, reply.chunks)
            self.store.upsert(collection, pending)
            if request.prune_missing and request.root is not None:
                reply.removed += self._prune(collection, request)
            if reply.chunks or reply.removed:
                self._dirty[collection] = time.monotonic()
        reply.seconds = time.perf_counter() - t0
        return reply

    def _ingest_one(
        self, collection: str, path: str, content: str, tags: list[str], pending: list[StoredPoint]
    ) -> tuple[int, int]:
        file_hash = self._file_hash(content, tags)
        existing = self.store.points_for_path(collection, path, with_vectors=False)
        if existing and all(p.payload.get("file_hash") == file_hash for p in existing.values()):
            return 0, 0  # unchanged since the last ingest
        chunks = chunk_document(path, content, max_chars=self.max_chars, overlap_lines=self.overlap_lines)
        ids = {c.id for c in chunks}
        kept = ids & existing.keys()
        old = self.store.points_for_path(collection, path, with_vectors=True) if kept else {}
        fresh = [c for c in chunks if c.id not in kept]
        vectors = dict(zip((c.id for c in fresh), self.embed([c.embed_text for c in fresh]), strict=True))
        for c in chunks:
            if c.id in kept:
                dense, sparse = old[c.id].dense, old[c.id].sparse
            else:
                dense, sparse = vectors[c.id], self._sparse(c.embed_text, query=False)
            pending.append(StoredPoint(c.id, dense, sparse, self._payload(c, tags, file_hash)))
        stale = sorted(existing.keys() - ids)
        self.store.delete(collection, stale)
        return len(chunks), len(stale)

    @staticmethod
    def _payload(c: Chunk, tags: list[str], file_hash: str) -> dict[str, Any]:
        return {
            "path": c.path, "start_line": c.start_line, "end_line": c.end_line, "text": c.text,
            "language": c.language, "tags": list(tags), "title": c.title, "file_hash": file_hash,
        }

    def _prune(self, collection: str, request: IngestRequest) -> int:
        present = {d.path for d in request.documents} | set(request.present_paths)
        root = request.root or "."
        gone = [p for p in self.store.paths(collection) if under_root(p, root) and p not in present]
        if not gone:
            return 0
        before = self.store.count(collection)
        self.store.delete_paths(collection, gone)
        return before - self.store.count(collection)

    # --- search -------------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchReply:
        """Top-k chunks for a query. Hits are ranked by the fused dense + BM25 ranking
        (dense only with ``hybrid=False``); ``score`` is always the cosine similarity of the
        query and chunk embeddings, so a consumer's relevance threshold means one thing."""
        t0 = time.perf_counter()
        self._check(request.collection, create=False)
        dense = self.embedder.embed([request.query])[0]
        sparse = self._sparse(request.query, query=True) if self.hybrid else None
        hits = self.store.search(request.collection, dense, sparse, request.top_k, request.filters)
        return SearchReply(
            collection=request.collection,
            hits=[
                SearchHit(
                    text=h.payload.get("text", ""),
                    path=h.payload.get("path", ""),
                    start_line=int(h.payload.get("start_line", 0)),
                    end_line=int(h.payload.get("end_line", 0)),
                    score=_cosine(dense, h.dense) if h.dense is not None else h.score,
                    language=h.payload.get("language", ""),
                    tags=list(h.payload.get("tags", [])),
                )
                for h in hits
            ],
            seconds=time.perf_counter() - t0,
        )

    # --- housekeeping -------------------------------------------------------------------
    def optimize_idle(self, idle_s: float = 2.0) -> list[str]:
        """Optimise collections written to but quiet for ``idle_s`` (builds the HNSW index)."""
        now = time.monotonic()
        done: list[str] = []
        for collection, at in list(self._dirty.items()):
            if now - at < idle_s:
                continue
            with self._write:
                if self._dirty.get(collection) != at:
                    continue  # written again meanwhile: wait for the next quiet spell
                self.store.optimize(collection)
                self._dirty.pop(collection, None)
            done.append(collection)
        return done

    def details(self) -> dict[str, Any]:
        """What a health reply reports: backend, embedder, collections with their counts."""
        counts: dict[str, int] = {}
        for name in self.store.collections():
            try:
                counts[name] = self.store.count(name)
            except RetrievalError:
                counts[name] = -1
        return {
            "backend": self.store.backend,
            "embedder": self.embedder.name,
            "dim": self.embedder.dim,
            "hybrid": self.hybrid,
            "collections": counts,
            "pending_optimize": sorted(self._dirty),
        }
