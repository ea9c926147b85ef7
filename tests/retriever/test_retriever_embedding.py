from __future__ import annotations

import os

import numpy as np
import pytest

from services.retriever import minilm as minilm_model
from services.retriever.embedding import Embedder, HashingEmbedder, load_embedder
from shared.errors import ModelUnavailable
from tests.retriever.minilm_reference import ReferenceMiniLM

TEXTS = [
    "Hello World, unbelievable!",
    "Impermanent loss hits liquidity providers when prices diverge.",
    "def chunk_markdown(text: str) -> list[Chunk]:\n    return []",
    "Café naïve résumé — ÜBER straße",
    "Liquidations happen when collateral value falls. " * 60,  # beyond the 256-token window
]


def test_gguf_matches_an_independent_numpy_forward_pass(minilm: Embedder) -> None:
    ref = ReferenceMiniLM(minilm_model.find_source(), max_tokens=minilm_model.MAX_TOKENS)
    got = np.array(minilm.embed(TEXTS))
    for text, v in zip(TEXTS, got, strict=True):
        assert abs(np.linalg.norm(v) - 1.0) < 1e-4
        assert float(v @ ref.embed(text)) > 0.9999, text[:40]


def test_related_texts_score_higher_than_unrelated(minilm: Embedder) -> None:
    q, related, unrelated = minilm.embed([
        "How do automated market makers price swaps?",
        "A constant product pool x*y=k sets the price of each trade.",
        "The museum opens at nine on Sundays.",
    ])
    assert np.dot(q, related) > np.dot(q, unrelated) + 0.2


def test_converted_model_is_cached_by_source_hash(minilm: Embedder) -> None:
    path = minilm_model.ensure_gguf()
    assert path.parent == minilm_model.cache_dir()
    assert minilm_model.SOURCE_SHA256[:16] in path.name
    mtime = os.path.getmtime(path)
    assert minilm_model.ensure_gguf() == path  # second call: the cached file, not rewritten
    assert os.path.getmtime(path) == mtime
    assert (minilm.name, minilm.dim) == ("all-MiniLM-L6-v2", 384)


def test_conversion_refuses_an_unexpected_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "model.zip"
    fake.write_bytes(b"not the model")
    with pytest.raises(ModelUnavailable, match="sha256"):
        minilm_model.ensure_gguf(fake)


def test_hashing_embedder_is_deterministic_unit_and_word_sensitive() -> None:
    e = HashingEmbedder(dim=64)
    a, b, c, empty = e.embed(["oracle price feed", "oracle price feed", "sandwich attack", ""])
    assert a == b
    assert abs(sum(x * x for x in a) - 1.0) < 1e-9 and abs(sum(x * x for x in empty) - 1.0) < 1e-9
    assert np.dot(a, b) > np.dot(a, c)
    assert isinstance(e, Embedder)


def test_unknown_embedder_kind_is_a_clear_error() -> None:
    with pytest.raises(ModelUnavailable, match="unknown embedder"):
        load_embedder("word2vec")
