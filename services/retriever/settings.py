from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import Settings


class RetrieverSettings(Settings):
    # A Qdrant server (compose, k8s); unset: the embedded engine under state_dir/qdrant.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SYNDICATE_QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    embedder: str = "minilm"  # minilm | hashing (tests only)
    # Threads of the embedding model; 0: one per core in SYNDICATE_CPUS (1 when unset,
    # which measured best on shared cores).
    embed_threads: int = 0
    hybrid: bool = True  # fuse dense and BM25 rankings (raised MRR on the labelled set)
    chunk_chars: int = 1000  # about 250 tokens: the model's 256-token window
    chunk_overlap_lines: int = 2
    # HNSW search beam width (None: the engine default). bench/retrieval.py at 100k chunks:
    # default recall@10 0.80 at 1.1 ms p50, 256 -> 0.94 at 1.6 ms.
    hnsw_ef: int | None = 256
    optimize_idle_s: float = 2.0  # build the HNSW index once ingestion is quiet this long
    ingest_ack_wait_s: float = 120.0
    ingest_max_deliver: int = 5
