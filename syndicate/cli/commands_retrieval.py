"""``syndicate ingest`` and ``syndicate search``: documents into the retriever, and back.

The CLI reads the files (``shared.ingest_files``: no binaries, no build/VCS folders) and sends them in
batches under the NATS payload limit. Small ingests are request/reply; large ones (or
``--background``) go to the INGEST JetStream stream, so the CLI may leave and the work
survives a retriever restart; progress comes back as one IngestReply per batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared import subjects
from shared.bus import request
from shared.contracts import (
    ErrorReply,
    IngestReply,
    IngestRequest,
    SearchFilters,
    SearchReply,
    SearchRequest,
    new_id,
)
from shared.errors import SyndicateError, error_from_code
from shared.ingest_files import plan_ingest, requests_for
from syndicate.cli.connect import connected_broker

console = Console()
err_console = Console(stderr=True)

SYNC_MAX_BYTES = 2_000_000  # above this the ingest goes through JetStream


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(search)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    collection: str = typer.Option("default", help="Collection to ingest into."),
    prune: bool = typer.Option(False, "--prune", help="Remove chunks of files under PATHS that no longer exist."),
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag every chunk (repeatable); search filters on tags.")] = None,
    background: bool = typer.Option(False, "--background", help="Always go through JetStream."),
    detach: bool = typer.Option(False, "--detach", help="Queue the work and return at once (implies --background)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Ingest documents and code into a collection (idempotent; changed files replace their chunks)."""
    t0 = time.perf_counter()
    plan = plan_ingest(paths, tag)
    for note in plan.skipped:
        err_console.print(f"[yellow]skipped[/] {note}")
    job_id = new_id("ing-")
    reqs = requests_for(plan, collection, prune, job_id)
    durable = background or detach or plan.total_bytes > SYNC_MAX_BYTES
    try:
        replies = asyncio.run(_run_ingest(reqs, plan.files, durable=durable, detach=detach, quiet=json_out))
    except SyndicateError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    seconds = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "job_id": job_id, "collection": collection, "files": sum(r.files for r in replies),
        "chunks": sum(r.chunks for r in replies), "removed": sum(r.removed for r in replies),
        "skipped": len(plan.skipped) + sum(len(r.skipped) for r in replies), "seconds": round(seconds, 2),
        "queued": detach,
    }
    summary["chunks_per_s"] = round(summary["chunks"] / seconds, 1) if seconds > 0 else 0.0
    if json_out:
        print(json.dumps(summary))
    elif detach:
        console.print(f"queued {len(reqs)} batches ({plan.files} files) as job [bold]{job_id}[/]")
    else:
        console.print(
            f"[green]ingested[/] {summary['files']} files into '{collection}': {summary['chunks']} chunks written, "
            f"{summary['removed']} removed, {summary['skipped']} skipped in {seconds:.1f} s "
            f"({summary['chunks_per_s']} chunks/s)"
        )


async def _run_ingest(reqs: list[IngestRequest], files: int, *, durable: bool, detach: bool, quiet: bool) -> list[IngestReply]:
    replies: list[IngestReply] = []
    progress = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                        TextColumn("{task.fields[chunks]} chunks"), TimeElapsedColumn(), disable=quiet, console=err_console)
    async with connected_broker() as broker:
        with progress:
            bar = progress.add_task("ingest", total=max(files, 1), chunks=0)

            def advance(reply: IngestReply) -> None:
                replies.append(reply)
                progress.update(bar, advance=reply.files + len(reply.skipped),
                                chunks=sum(r.chunks for r in replies))

            if not durable:
                for req in reqs:
                    advance(await request(broker, subjects.RETRIEVER_INGEST, req, IngestReply, timeout=600.0))
                return replies
            await _durable(broker, reqs, advance, detach)
    return replies


async def _durable(broker, reqs: list[IngestRequest], advance, detach: bool) -> None:  # type: ignore[no-untyped-def]
    nc = broker.connection
    events: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        await events.put(msg.data)

    sub = await nc.subscribe(subjects.ingest_events(reqs[0].job_id), cb=on_event) if reqs else None
    for req in reqs:  # Nats-Msg-Id: a re-sent batch is dropped by the stream's dedup window
        await broker.publish(req, subjects.INGEST_JOB, stream=subjects.INGEST_STREAM,
                             headers={"Nats-Msg-Id": f"{req.job_id}.{req.batch}"})
    if detach or sub is None:
        return
    done: set[int] = set()
    try:
        while len(done) < len(reqs):
            data = json.loads(await events.get())
            if "error" in data and set(data) <= {"version", "error"}:
                err = ErrorReply.model_validate(data).error
                raise error_from_code(err.code, err.message, err.detail)
            reply = IngestReply.model_validate(data)
            if reply.batch not in done:  # a redelivered batch reports twice
                done.add(reply.batch)
                advance(reply)
    finally:
        await sub.unsubscribe()


def search(
    query: str = typer.Argument(..., help="What to look for, in words."),
    collection: str = typer.Option("default", help="Collection to search."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Number of hits."),
    path_prefix: str | None = typer.Option(None, "--path", help="Only files under this path prefix."),
    language: str | None = typer.Option(None, help="Only chunks of this language (python, markdown, ...)."),
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only chunks carrying this tag (repeatable).")] = None,
    json_out: bool = typer.Option(False, "--json", help="Print the SearchReply as JSON."),
) -> None:
    """Similarity search over a collection: the best chunks with path, line range and score."""
    req = SearchRequest(query=query, collection=collection, top_k=top_k,
                        filters=SearchFilters(path_prefix=path_prefix, language=language, tags=tag or []))
    try:
        reply = asyncio.run(_search(req))
    except SyndicateError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    if json_out:
        print(reply.model_dump_json())
        return
    console.print(f"{len(reply.hits)} hits in '{collection}' ({reply.seconds * 1000:.0f} ms)")
    for h in reply.hits:  # paths stay whole (a table column would cut them)
        console.print(f"[bold]{h.score:.3f}[/]  [cyan]{h.path}[/]:{h.start_line}-{h.end_line}", soft_wrap=True)
        console.print(f"       [dim]{' '.join(h.text.split())[:200]}[/]", soft_wrap=True)


async def _search(req: SearchRequest) -> SearchReply:
    async with connected_broker() as broker:
        return await request(broker, subjects.RETRIEVER_SEARCH, req, SearchReply, timeout=60.0)
