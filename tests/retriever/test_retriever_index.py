"""DocumentIndex over every backend (embedded Qdrant, qdrant-client in memory, a real
server when reachable): ingest, idempotency, replacement, prune, filters, mismatch."""

from __future__ import annotations

import pytest

from services.retriever.embedding import HashingEmbedder
from services.retriever.index import DocumentIndex, under_root
from services.retriever.store import VectorStore
from shared.contracts import IngestDocument, IngestRequest, SearchFilters, SearchRequest
from shared.errors import CollectionMismatch, RetrievalError
from tests.retriever.conftest import unique

DOCS = {
    "notes/amm.md": "# AMM\n\nConstant product pools price swaps with x times y equals k.\n",
    "notes/oracles.md": "# Oracles\n\nPrice feeds, heartbeat checks and TWAP averages.\n",
    "src/pool.py": "def swap(x, y, dx):\n    return y - x * y / (x + dx)\n",
    "other/lending.md": "# Lending\n\nHealth factor and liquidation threshold of a loan.\n",
}


def index_for(store: VectorStore, **kw) -> DocumentIndex:  # type: ignore[no-untyped-def]
    return DocumentIndex(store, HashingEmbedder(dim=64), **kw)


def ingest(idx: DocumentIndex, collection: str, docs: dict[str, str], **kw):  # type: ignore[no-untyped-def]
    req = IngestRequest(collection=collection, documents=[IngestDocument(path=p, content=c) for p, c in docs.items()], **kw)
    return idx.ingest(req)


def paths(idx: DocumentIndex, collection: str, query: str, k: int = 10, **filters) -> list[str]:  # type: ignore[no-untyped-def]
    reply = idx.search(SearchRequest(query=query, collection=collection, top_k=k, filters=SearchFilters(**filters)))
    return [h.path for h in reply.hits]


@pytest.mark.parametrize("hybrid", [True, False])
def test_ingest_then_search_finds_the_file(store: VectorStore, hybrid: bool) -> None:
    idx, col = index_for(store, hybrid=hybrid), unique("basic")
    reply = ingest(idx, col, DOCS)
    assert (reply.files, reply.chunks) == (4, 4)
    hits = idx.search(SearchRequest(query="constant product pools swaps", collection=col, top_k=2)).hits
    assert hits[0].path == "notes/amm.md"
    assert hits[0].start_line == 1 and hits[0].end_line == 3 and "x times y" in hits[0].text
    assert -1.0 <= hits[0].score <= 1.0 and hits[0].score > hits[-1].score - 1e-9  # a cosine


def test_reingest_is_idempotent_and_skips_unchanged_files(store: VectorStore) -> None:
    idx, col = index_for(store), unique("idem")
    ingest(idx, col, DOCS)
    before = store.count(col)
    again = ingest(idx, col, DOCS)
    assert again.files == 4 and again.chunks == 0 and again.removed == 0
    assert store.count(col) == before


def test_changed_file_replaces_its_chunks_and_keeps_unchanged_ones(store: VectorStore) -> None:
    idx, col = index_for(store, max_chars=20), unique("change")
    v1 = "alpha block one\n\nbeta block two\n\ngamma block three\n"
    ingest(idx, col, {"f.txt": v1})
    ids_v1 = set(store.points_for_path(col, "f.txt", with_vectors=False))
    v2 = "alpha block one\n\nBETA REWRITTEN\n\ngamma block three\n\ndelta new\n"
    reply = ingest(idx, col, {"f.txt": v2})
    stored = store.points_for_path(col, "f.txt", with_vectors=True)
    texts = sorted(p.payload["text"] for p in stored.values())
    assert "beta block two" not in " ".join(texts) and "BETA REWRITTEN" in " ".join(texts)
    assert reply.removed == len(ids_v1 - set(stored))
    assert len(ids_v1 & set(stored)) >= 1  # the unchanged chunk kept its id and vector
    assert all(len(p.dense) == 64 for p in stored.values())
    assert paths(idx, col, "beta rewritten")[0] == "f.txt"


def test_prune_removes_deleted_files_under_root_only(store: VectorStore) -> None:
    idx, col = index_for(store), unique("prune")
    ingest(idx, col, DOCS)
    reply = idx.ingest(IngestRequest(collection=col, prune_missing=True, root="notes",
                                     present_paths=["notes/amm.md"]))
    assert reply.removed == 1
    assert set(store.paths(col)) == {"notes/amm.md", "src/pool.py", "other/lending.md"}


def test_filters_path_prefix_language_and_tags(store: VectorStore) -> None:
    idx, col = index_for(store), unique("filters")
    docs = [IngestDocument(path=p, content=c, tags=["defi"] if p.startswith("notes") else []) for p, c in DOCS.items()]
    idx.ingest(IngestRequest(collection=col, documents=docs))
    assert set(paths(idx, col, "price", path_prefix="notes/")) == {"notes/amm.md", "notes/oracles.md"}
    assert paths(idx, col, "price", language="python") == ["src/pool.py"]
    assert set(paths(idx, col, "price", tags=["defi"])) == {"notes/amm.md", "notes/oracles.md"}
    assert paths(idx, col, "price", tags=["defi", "absent"]) == []


def test_binary_content_is_skipped_with_a_note(store: VectorStore) -> None:
    idx, col = index_for(store), unique("binary")
    reply = ingest(idx, col, {"img.png": "\x89PNG\x00\x00data", "ok.txt": "plain text"})
    assert reply.files == 1 and reply.skipped == ["img.png: binary content"]


def test_collection_records_its_embedder_and_refuses_another(store: VectorStore) -> None:
    col = unique("mismatch")
    ingest(index_for(store), col, DOCS)
    meta = store.meta(col)
    assert meta is not None and (meta.embedder, meta.dim) == ("hashing-64", 64)
    other = DocumentIndex(store, HashingEmbedder(dim=32))
    with pytest.raises(CollectionMismatch, match="hashing-64") as exc:
        other.search(SearchRequest(query="x", collection=col))
    assert exc.value.detail["collection_dim"] == 64 and exc.value.detail["dim"] == 32
    with pytest.raises(CollectionMismatch):
        ingest(other, col, {"new.md": "text"})


def test_search_in_a_missing_collection_is_a_clear_error(store: VectorStore) -> None:
    with pytest.raises(RetrievalError, match="no collection"):
        index_for(store).search(SearchRequest(query="x", collection=unique("missing")))


def test_optimize_idle_runs_after_quiet_period(store: VectorStore) -> None:
    idx, col = index_for(store), unique("opt")
    ingest(idx, col, DOCS)
    assert idx.optimize_idle(idle_s=3600) == []  # written just now: not yet
    assert idx.optimize_idle(idle_s=0) == [col]
    assert idx.details()["pending_optimize"] == []
    assert paths(idx, col, "oracles heartbeat")[0] == "notes/oracles.md"


def test_under_root() -> None:
    assert under_root("notes/a.md", "notes") and under_root("notes/a.md", "notes/")
    assert not under_root("notes2/a.md", "notes")
    assert under_root("a.md", ".") and not under_root("/abs/a.md", ".")
