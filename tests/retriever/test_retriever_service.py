"""The retriever as a real process: real nats-server, real MiniLM in llama.cpp, the
embedded Qdrant, and the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from shared import subjects
from shared.contracts import EmbedReply, EmbedRequest
from tests.conftest import REPO, WAIT_S, Services

pytestmark = pytest.mark.integration

NOTES = REPO / "examples" / "defi-notes"


def start_retriever(services: Services, **env: str) -> None:
    services.start("retriever", "services.retriever", SYNDICATE_LOG_JSON="false", **env)
    services.wait_ready(["retriever"])


def cli_json(services: Services, *args: str) -> dict:
    out = services.cli(*args, "--json")
    assert out.returncode == 0, out.stderr + services.log("retriever")[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ingest_search_reingest_and_prune_through_the_cli(services: Services, tmp_path: Path) -> None:
    start_retriever(services)
    notes = tmp_path / "notes"
    shutil.copytree(NOTES, notes)
    first = cli_json(services, "ingest", str(notes), "--collection", "defi")
    assert first["files"] == 8 and first["chunks"] > 8 and first["removed"] == 0

    reply = cli_json(services, "search", "who repays an unhealthy loan and gets a discount on collateral",
                     "--collection", "defi", "--top-k", "3")
    assert reply["hits"][0]["path"].endswith("notes/liquidations.md")
    assert reply["hits"][0]["start_line"] >= 1 and reply["hits"][0]["end_line"] >= reply["hits"][0]["start_line"]

    again = cli_json(services, "ingest", str(notes), "--collection", "defi")
    assert again["files"] == 8 and again["chunks"] == 0  # idempotent: nothing re-embedded

    (notes / "mev.md").unlink()
    pruned = cli_json(services, "ingest", str(notes), "--collection", "defi", "--prune")
    assert pruned["removed"] > 0
    reply = cli_json(services, "search", "sandwich attack front-running", "--collection", "defi", "--top-k", "10")
    assert not any(h["path"].endswith("mev.md") for h in reply["hits"])

    table = services.cli("search", "impermanent loss", "--collection", "defi")
    assert table.returncode == 0 and "impermanent-loss.md" in table.stdout


def test_embed_and_health_over_the_bus(services: Services) -> None:
    start_retriever(services)

    async def go() -> tuple[EmbedReply, list[dict]]:
        nc = await nats.connect(services.server.url)
        msg = await nc.request(subjects.RETRIEVER_EMBED,
                               EmbedRequest(texts=["oracle price", "liquidation"]).model_dump_json().encode(), timeout=30)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.HEALTH_PING, b'{"version": 1}', reply=inbox)
        health = [json.loads((await sub.next_msg(timeout=5)).data)]
        bad = await nc.request(subjects.RETRIEVER_SEARCH, b'{"query": ""}', timeout=10)
        await nc.close()
        return EmbedReply.model_validate_json(msg.data), health + [json.loads(bad.data)]

    embed, (health, bad) = asyncio.run(go())
    assert (embed.model, embed.dim, len(embed.vectors)) == ("all-MiniLM-L6-v2", 384, 2)
    assert abs(sum(x * x for x in embed.vectors[0]) - 1.0) < 1e-3
    assert health["service"] == "retriever" and health["model"] == "all-MiniLM-L6-v2"
    assert health["details"]["backend"] == "qdrant-edge" and health["details"]["dim"] == 384
    assert bad["error"]["code"] == "invalid_payload"


def test_background_ingest_survives_a_retriever_crash(services: Services, tmp_path: Path) -> None:
    start_retriever(services, SYNDICATE_INGEST_ACK_WAIT_S="3")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):  # 3 batches of at most 16 files
        (corpus / f"note{i:02d}.md").write_text(f"# Note {i}\n\n" + f"Topic {i}: collateral, oracles and fees. " * 20)
    cli = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "ingest", str(corpus), "--collection", "crash",
                            "--background", "--json"], env=services.env(), cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while "ingest batch done" not in services.log("retriever"):
            assert time.monotonic() < deadline and cli.poll() is None, services.log("retriever")[-2000:]
            time.sleep(0.2)
        services.procs["retriever"].kill()  # mid-job: later batches queued or in flight
        services.procs["retriever"].wait()
        start_retriever(services, SYNDICATE_INGEST_ACK_WAIT_S="3")
        out, err = cli.communicate(timeout=180)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["files"] == 40 and summary["queued"] is False
    reply = cli_json(services, "search", "Topic 37 collateral", "--collection", "crash", "--top-k", "40")
    assert {Path(h["path"]).name for h in reply["hits"]} == {f"note{i:02d}.md" for i in range(40)}


def test_collection_mismatch_is_a_clear_cli_error(services: Services, tmp_path: Path) -> None:
    start_retriever(services)
    cli_json(services, "ingest", str(NOTES / "amm.md"), "--collection", "mini")
    services.procs["retriever"].terminate()
    services.procs["retriever"].wait(30)
    start_retriever(services, SYNDICATE_EMBEDDER="hashing")
    out = services.cli("search", "constant product", "--collection", "mini")
    assert out.returncode == 2
    assert "all-MiniLM-L6-v2" in out.stderr and "hashing-64" in out.stderr
