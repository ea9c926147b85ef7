"""retriever: ingests documents and code into Qdrant collections, answers filtered
similarity search, and embeds texts for the gateway's /v1/embeddings.

Request/reply (queue group: copies share the load): search, ingest (small), embed.
Large ingests arrive as batches on the INGEST JetStream stream (durable consumer): the
CLI may leave, and a batch interrupted by a restart is redelivered; re-ingesting is
idempotent because chunk ids derive from content.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Annotated

from faststream import Context
from faststream.nats import PullSub
from faststream.nats.annotations import NatsMessage

from services.retriever.embedding import load_embedder
from services.retriever.index import DocumentIndex
from services.retriever.settings import RetrieverSettings
from services.retriever.store import VectorStore
from shared import subjects
from shared.bus import consumer, ensure_jetstream, js_stream, make_broker, to_error_info
from shared.contracts import (
    EmbedReply,
    EmbedRequest,
    ErrorReply,
    IngestReply,
    IngestRequest,
    SearchReply,
    SearchRequest,
)
from shared.errors import SyndicateError
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app, in_progress
from shared.settings import parse_cpus


def open_store(
    state_dir: Path, qdrant_url: str | None = None, api_key: str | None = None, hnsw_ef: int | None = None
) -> VectorStore:
    """The server backend when a URL is configured, else the embedded engine (each
    imported only when chosen: qdrant-client is slow to import and unused by default)."""
    if qdrant_url:
        from services.retriever.store_server import ServerStore

        return ServerStore(qdrant_url, api_key=api_key, hnsw_ef=hnsw_ef)
    from services.retriever.store_edge import EdgeStore

    return EdgeStore(state_dir / "qdrant", hnsw_ef=hnsw_ef)


settings = RetrieverSettings()
log = setup_logging("retriever", settings.log_level, settings.log_json)
broker = make_broker("retriever", settings)
runtime = ServiceRuntime("retriever", settings)
app = create_app(runtime, broker)
Index = Annotated[DocumentIndex, Context("index")]  # loaded once in startup


def _load() -> DocumentIndex:
    cpus = parse_cpus(settings.cpus)
    if cpus:
        os.sched_setaffinity(0, cpus)  # before the model loads, so its threads stay there
    threads = settings.embed_threads or max(1, len(cpus))
    embedder = load_embedder(settings.embedder, threads=threads)
    store = open_store(settings.state_dir, settings.qdrant_url, settings.qdrant_api_key, settings.hnsw_ef)
    runtime.model, runtime.threads = embedder.name, threads
    return DocumentIndex(
        store, embedder, hybrid=settings.hybrid,
        max_chars=settings.chunk_chars, overlap_lines=settings.chunk_overlap_lines,
    )


async def _refresh(index: DocumentIndex) -> None:
    runtime.details = await asyncio.to_thread(index.details)


async def _optimize_when_idle(index: DocumentIndex) -> None:
    while True:
        await asyncio.sleep(max(0.2, settings.optimize_idle_s / 2))
        try:
            done = await asyncio.to_thread(index.optimize_idle, settings.optimize_idle_s)
        except Exception as exc:  # a failed optimisation must not stop the loop
            log.warning("optimize failed", error=str(exc))
            continue
        if done:
            log.info("collections optimized", collections=done)
            await _refresh(index)


@app.on_startup
async def startup() -> None:
    await ensure_jetstream(broker)
    index = await asyncio.to_thread(_load)
    app.context.set_global("index", index)
    app.context.set_global("optimizer", asyncio.create_task(_optimize_when_idle(index)))
    await _refresh(index)
    log.info("retriever ready", **runtime.details)


@app.on_shutdown
async def shutdown() -> None:
    optimizer = app.context.get("optimizer")
    if optimizer is not None:
        optimizer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await optimizer
    index = app.context.get("index")
    if index is not None:
        await asyncio.to_thread(index.store.close)


@broker.subscriber(subjects.RETRIEVER_SEARCH, queue=subjects.QUEUE_RETRIEVER)
async def on_search(req: SearchRequest, index: Index) -> SearchReply:
    t0 = time.perf_counter()
    reply = await asyncio.to_thread(index.search, req)
    runtime.metrics.observe_retrieval("search", time.perf_counter() - t0)
    return reply


@broker.subscriber(subjects.RETRIEVER_EMBED, queue=subjects.QUEUE_RETRIEVER)
async def on_embed(req: EmbedRequest, index: Index) -> EmbedReply:
    t0 = time.perf_counter()
    vectors = await asyncio.to_thread(index.embed, req.texts)
    runtime.metrics.observe_retrieval("embed", time.perf_counter() - t0)
    return EmbedReply(model=index.embedder.name, dim=index.embedder.dim, vectors=vectors)


@broker.subscriber(subjects.RETRIEVER_INGEST, queue=subjects.QUEUE_RETRIEVER)
async def on_ingest(req: IngestRequest, index: Index) -> IngestReply:
    reply = await asyncio.to_thread(index.ingest, req)
    await _refresh(index)
    return reply


@broker.subscriber(
    subjects.INGEST_JOB, stream=js_stream(subjects.INGEST_STREAM), durable=subjects.RETRIEVER_INGEST_DURABLE,
    pull_sub=PullSub(timeout=1.0),
    config=consumer(subjects.RETRIEVER_INGEST_DURABLE, ack_wait_s=settings.ingest_ack_wait_s,
                    max_deliver=settings.ingest_max_deliver),
)
async def on_ingest_job(req: IngestRequest, msg: NatsMessage,
                        index: Index) -> None:
    try:
        async with in_progress(msg, every_s=settings.ingest_ack_wait_s / 4):
            reply = await asyncio.to_thread(index.ingest, req)
    except SyndicateError as exc:  # e.g. CollectionMismatch: redelivery would not help
        log.warning("ingest batch refused", job_id=req.job_id, batch=req.batch, error=exc.message)
        await broker.publish(ErrorReply(error=to_error_info(exc)), subjects.ingest_events(req.job_id))
        return
    log.info("ingest batch done", job_id=req.job_id, batch=req.batch, files=reply.files, chunks=reply.chunks)
    await broker.publish(reply, subjects.ingest_events(req.job_id))
    await _refresh(index)
