"""The console without a browser or a bus: its read model (agents, task summaries, the
evolution adapter, the study finder), its drawings, its SSE framing, and its gate (the
API key, read-only vs write, foreign hosts, CSRF) on the in-process app."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.console.data import (
    TraceView,
    agent_rows,
    latest_study,
    study_cells,
    summarize,
)
from services.gateway.console.evolve import build_view
from services.gateway.console.render import STATIC, render, score_chart, tokens_html, waterfall_bars
from services.gateway.main import create_gateway
from services.gateway.routes.ui_access import COOKIE, cookie_value
from services.gateway.routes.ui_stream import sse
from services.gateway.settings import GatewaySettings
from shared.contracts import HealthReply, TaskState, TaskSubmit
from shared.trace_view import waterfall, without_create_spans
from tests.conftest import free_port

KEY = "console-unit-key"


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator:
    clients: list[TestClient] = []

    def make(base: str = "http://127.0.0.1:8080", **kw) -> TestClient:
        settings = GatewaySettings(nats_url=f"nats://127.0.0.1:{free_port()}", state_dir=tmp_path, **kw)
        client = TestClient(create_gateway(settings), base_url=base, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_vendored_files_are_the_packages_files() -> None:
    """htmx and its SSE extension are served from the repository (no CDN), unchanged, with
    their licenses beside them."""
    expected = {
        "htmx-2.0.11.min.js": "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
        "htmx-ext-sse-2.2.4.js": "3b5992a541619babefc4c169505af474df5c3039da51e59b96ccf9241ecd61d2",
    }
    for name, digest in expected.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert "Zero-Clause BSD" in (STATIC / "LICENSE-htmx.txt").read_text()
    assert "BSD Zero Clause" in (STATIC / "LICENSE-htmx-ext-sse.txt").read_text()


def test_agent_rows_join_health_and_the_supervisor_record() -> None:
    coder = HealthReply(service="coder-agent", instance="coder-agent-1", pid=11, cpus=[2, 3], threads=2,
                        model="qwen2.5-coder-1.5b", running=1, queue_depth=2,
                        details={"slots": 4, "tokens_per_s": 13.4, "model_file": {"quant": "Q4_K_M"}, "uptime_s": 9.0})
    record = {"supervisor_pid": 1, "services": {"router": {"pid": 10, "restarts": 0},
                                                "coder-agent": {"pid": 11, "restarts": 2, "cpus": [2, 3]}}}
    rows = agent_rows([coder], record)
    assert [(r.service, r.state) for r in rows] == [("coder-agent", "ready"), ("router", "down")]
    c = rows[0]
    assert (c.model, c.quant, c.cores, c.threads, c.slots_busy, c.slots_total, c.queue_depth, c.tokens_per_s, c.restarts) == (
        "qwen2.5-coder-1.5b", "Q4_K_M", "2-3", 2, 1, 4, 2, 13.4, 2)


def test_task_summary_reads_any_state_record() -> None:
    state = TaskState(task=TaskSubmit(text="x" * 500, kind="code"), status="running", route=["coder"])
    s = summarize(state.model_dump_json())
    assert s is not None and (s.status, s.kind, s.agents) == ("running", "code", ["coder"])
    assert len(s.text) <= 161 and s.text.endswith("…")
    # A status or field this gateway does not know yet still shows; garbage does not crash.
    raw = json.loads(state.model_dump_json()) | {"status": "input_required", "thread": {"id": "th-1"}}
    assert summarize(json.dumps(raw)).status == "input_required"  # type: ignore[union-attr]
    assert summarize(b"not json") is None and summarize(b'{"task": 1}') is None
    done = json.loads(state.model_dump_json()) | {"status": "done", "result": {"unverified": True, "status": "done"}}
    assert summarize(json.dumps(done)).unverified  # type: ignore[union-attr]


def _prog(pid: str, gen: int, score: float | None, parents: list[str], at: float, **extra) -> dict:
    return {"program_id": pid, "generation": gen, "score": score, "parents": parents, "created_at": at,
            "verdict": "ok" if score is not None else "runtime_error", "code": f"# {pid}", **extra}


def test_evolve_view_orders_samples_and_traces_the_lineage() -> None:
    run = {"run_id": "evo-1", "status": "running", "generation": 2, "seed_score": 1.0, "best_id": "g2-c0",
           "best_score": 9.0, "spec": {"name": "toy", "generations": 3}}
    programs = {p["program_id"]: p for p in [
        _prog("seed", 0, 1.0, [], 1.0), _prog("g1-c0", 1, 4.0, ["seed"], 2.0), _prog("g1-c1", 1, None, ["seed"], 2.5),
        _prog("g2-c0", 2, 9.0, ["g1-c0", "seed"], 3.0), _prog("g2-c1", 2, 3.0, ["g1-c0"], 3.5),
    ]}
    view = build_view(run, programs)
    assert view.samples == 5 and list(view.islands) == ["population"]
    assert [s.program_id for s in view.islands["population"]] == ["seed", "g1-c0", "g1-c1", "g2-c0", "g2-c1"]
    assert [p["program_id"] for p in view.lineage] == ["g2-c0", "g1-c0", "seed"]
    assert view.best_code == "# g2-c0" and view.running
    chart = score_chart(view)
    (series,) = chart.series
    assert len(series.dots) == 4 and len(series.failed) == 1 and series.best == 9.0
    # The best-so-far line never goes down (SVG y grows downwards).
    ys = [float(p.split(",")[1]) for p in series.line.split()]
    assert ys == sorted(ys, reverse=True)


def test_evolve_view_draws_one_series_per_island() -> None:
    """Island runs (FunSearch-style records): samples in the order they were evaluated,
    jobs still out are not samples yet, each island its own series."""
    run = {"run_id": "evo-2", "status": "running", "best_id": "s3", "final_id": "", "asked": 5,
           "spec": {"mode": "islands", "samples": 40}}
    programs = {p["program_id"]: p for p in [
        _prog("seed", 0, 1.0, [], 1.0), _prog("s1", 0, 2.0, ["seed"], 2.0, island=0, sample=1, finished_at=3.0),
        _prog("s2", 0, None, ["seed"], 2.1, island=1, sample=2, finished_at=5.0),
        _prog("s3", 0, 5.0, ["seed"], 2.2, island=1, sample=3, finished_at=4.0),
        _prog("s4", 0, 3.0, ["s1"], 2.3, island=0, sample=4, finished_at=6.0),
        _prog("s5", 0, None, ["s1"], 2.5, island=0, sample=5) | {"verdict": "asked"},
    ]}
    islands = {"evo-2.island.00": {"island": 0, "epoch": 0}, "evo-2.island.01": {"island": 1, "epoch": 2}}
    view = build_view(run, programs, islands)
    assert {k: [s.program_id for s in v] for k, v in view.islands.items()} == {
        "seed & baselines": ["seed"], "island 0": ["s1", "s4"], "island 1": ["s3", "s2"]}
    assert [s.n for s in view.islands["island 1"]] == [3, 4]
    assert (view.samples, view.asked, view.budget, view.best_id, view.generations_planned) == (5, 5, 40, "s3", None)
    chart = score_chart(view)
    assert [(s.island, s.best, s.resets) for s in chart.series] == [
        ("seed & baselines", 1.0, 0), ("island 0", 3.0, 0), ("island 1", 5.0, 2)]
    assert [len(s.failed) for s in chart.series] == [0, 0, 1] and view.running
    html = render("evolve_panel.html", view=view, chart=chart)
    assert 'data-dots="4"' in html and "island 1: best 5.000 (2 resets)" in html and "5 asked of 40" in html


def test_waterfall_hides_create_spans_and_places_bars() -> None:
    spans = [
        {"trace_id": "t", "span_id": "a", "parent_id": None, "service": "cli", "name": "syndicate submit", "start": 10.0, "end": 12.0},
        {"trace_id": "t", "span_id": "b", "parent_id": "a", "service": "cli", "name": "syndicate.task.submit create", "start": 10.1, "end": 10.1},
        {"trace_id": "t", "span_id": "c", "parent_id": "b", "service": "router", "name": "syndicate.task.events.t-1 publish", "start": 11.0, "end": 11.5, "status": "error"},
    ]
    rows, total = waterfall(without_create_spans(spans))
    assert total == 2.0 and [(r.label, r.depth) for r in rows] == [("syndicate submit", 0), ("task.events publish", 1)]
    bars = waterfall_bars(TraceView(trace_id="t", rows=rows, total_s=total, services=["cli", "router"]))
    assert [(b.x, b.width) for b in bars] == [(0.0, 1000.0), (500.0, 250.0)] and bars[0].colour != bars[1].colour


def test_latest_study_prefers_the_newest_report(tmp_path: Path) -> None:
    def report(folder: Path, finished: float, label: str) -> None:
        folder.mkdir(parents=True)
        rows = [{"label": label, "size_bytes": 2e6, "reference": False, "humaneval": {"pass@1": 0.5, "n": 4},
                 "speed": {"gen_tok_s": 12.0, "prompt_tok_s": 80.0, "peak_rss_bytes": 3e6}}]
        (folder / "report.json").write_text(json.dumps({"study": {"finished_at": finished}, "rows": rows}))

    report(tmp_path / "a", 100.0, "old")
    report(tmp_path / "b" / "quick", 200.0, "new")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.json").write_text("{broken")
    view = latest_study(tmp_path / "state", [tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert view is not None and view.rows[0]["label"] == "new" and view.plot is None
    cells = study_cells(view.rows[0])
    assert (cells["humaneval"], cells["gsm8k"], cells["gen_tps"], cells["file_mb"]) == ("0.50", "–", "12.0", "2")
    # The study the state dir recorded last wins over older ones in the folders.
    (tmp_path / "state").mkdir()
    report(tmp_path / "elsewhere", 300.0, "recorded")
    (tmp_path / "state" / "study-latest.json").write_text(json.dumps({"out": str(tmp_path / "elsewhere")}))
    assert latest_study(tmp_path / "state", [tmp_path / "a"]).rows[0]["label"] == "recorded"  # type: ignore[union-attr]


def test_streamed_text_and_events_keep_their_shape() -> None:
    assert tokens_html("a < b\n\tc") == "a &lt; b&#10;\tc"
    assert sse("task", "<p>one</p>\n<p>two</p>") == "event: task\ndata: <p>one</p>\ndata: <p>two</p>\n\n"
    assert sse("done", "") == "event: done\ndata: \n\n"


def test_console_off_serves_nothing(make_client) -> None:
    client = make_client(gateway_console="off")
    assert client.get("/ui").status_code == 404
    assert client.get("/ui/static/console.css").status_code == 404


def test_read_only_console_renders_without_the_bus_and_refuses_writes(make_client) -> None:
    client = make_client()
    r = client.get("/ui", headers={"accept": "text/html"})
    assert r.status_code == 200 and "Agents" in r.text and "bus unreachable" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="submit-form"' not in r.text  # read-only: no form
    for path in ("/ui/evolve", "/ui/study"):
        assert client.get(path).status_code == 200
    assert client.get("/ui/tasks/t-nothing").status_code == 404
    r = client.post("/ui/tasks", data={"text": "hi"}, headers={"hx-request": "true"})
    assert r.status_code == 403 and "read-only" in r.text
    assert client.get("/ui/static/htmx-2.0.11.min.js").headers["cache-control"].endswith("immutable")
    assert client.get("/ui/static/../main.py").status_code == 404


def test_write_console_accepts_only_its_own_page(make_client) -> None:
    client = make_client(gateway_console="write")
    assert 'id="submit-form"' in client.get("/ui").text
    # A plain cross-site form post (no htmx header) or a foreign Origin is refused...
    assert client.post("/ui/tasks", data={"text": "hi"}).status_code == 403
    r = client.post("/ui/tasks", data={"text": "hi"}, headers={"hx-request": "true", "origin": "http://evil.example"})
    assert r.status_code == 403
    # ...the page's own request gets as far as the bus (down here: 503, said in the page).
    r = client.post("/ui/tasks", data={"text": "hi"}, headers={"hx-request": "true", "origin": "http://127.0.0.1:8080"})
    assert r.status_code == 503 and "unreachable" in r.text
    r = client.post("/ui/tasks", data={"text": "hi", "kind": "poetry"}, headers={"hx-request": "true"})
    assert r.status_code == 400
    r = client.post("/ui/tasks", data={"text": "  \n "}, headers={"hx-request": "true"})
    assert r.status_code == 400 and "no text" in r.text
    r = client.post("/ui/tasks/t-1/review", data={"decision": "maybe"}, headers={"hx-request": "true"})
    assert r.status_code == 400
    r = client.post("/ui/tasks/t-1/review", data={"decision": "approve"}, headers={"hx-request": "true"})
    assert r.status_code == 503
    assert make_client().post("/ui/tasks/t-1/review", data={"decision": "approve"},
                              headers={"hx-request": "true"}).status_code == 403  # read-only


def test_api_key_guards_the_console_with_a_cookie(make_client) -> None:
    client = make_client(gateway_api_key=KEY, gateway_console="write")
    r = client.get("/ui/evolve", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fevolve"
    assert client.get("/ui/sse/overview", headers={"accept": "text/event-stream"}).status_code == 401
    assert client.get("/ui/static/console.css").status_code == 200  # nothing private there
    assert client.post("/ui/login", data={"key": "wrong", "next": "/ui/evolve"}).status_code == 401
    r = client.post("/ui/login", data={"key": KEY, "next": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui"  # never off-site
    cookie = r.cookies.get(COOKIE)
    assert cookie == cookie_value(KEY) and KEY not in cookie
    assert re.search(r"(?i)httponly", r.headers["set-cookie"]) and "samesite=strict" in r.headers["set-cookie"].lower()
    client.cookies.set(COOKIE, cookie)
    assert client.get("/ui/evolve").status_code == 200
    client.cookies.clear()
    assert client.get("/ui/study", headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/ui/study", headers={"authorization": "Bearer nope"}).status_code == 401


def test_loopback_gateway_refuses_foreign_hosts(make_client) -> None:
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 must not read the console."""
    client = make_client(base="http://evil.example:8080")
    assert client.get("/ui").status_code == 403
    assert make_client(base="http://localhost:8080").get("/ui").status_code == 200
