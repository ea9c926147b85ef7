"""What only the embedded backend has: its folder lock, persistence, name checks."""

from __future__ import annotations

import pytest

from services.retriever.embedding import HashingEmbedder
from services.retriever.index import DocumentIndex
from services.retriever.store_edge import EdgeStore
from shared.contracts import IngestDocument, IngestRequest, SearchRequest
from shared.errors import RetrievalError


def test_second_process_on_the_same_folder_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = EdgeStore(tmp_path / "q")
    with pytest.raises(RetrievalError, match="in use by another process"):
        EdgeStore(tmp_path / "q")
    first.close()
    EdgeStore(tmp_path / "q").close()  # released on close


def test_collections_persist_across_reopen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = EdgeStore(tmp_path / "q")
    idx = DocumentIndex(store, HashingEmbedder())
    idx.ingest(IngestRequest(collection="keep", documents=[IngestDocument(path="a.md", content="# A\n\noracle prices")]))
    store.close()
    reopened = EdgeStore(tmp_path / "q")
    assert reopened.collections() == ["keep"] and reopened.count("keep") == 1
    hits = DocumentIndex(reopened, HashingEmbedder()).search(SearchRequest(query="oracle", collection="keep")).hits
    assert hits[0].path == "a.md"
    reopened.close()


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b"])
def test_path_like_collection_names_are_refused(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    store = EdgeStore(tmp_path / "q")
    with pytest.raises(RetrievalError, match="invalid collection name"):
        store.meta(name)
    store.close()
