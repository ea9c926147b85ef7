"""The web console's speed and cost, with a real browser (Debian's chromium through
Playwright) on a real local stack (`syndicate up --detach`; agents on scripted models that
stream their replies, so the numbers are the console's plumbing, not a model).

1. Submit → visible: tasks are published straight to the bus (as the CLI does) while five
   console pages are open; each page records, in the browser, when the task's row appeared.
   Goal: p95 < 1 s (issue 29).
2. Cost: the gateway's CPU time (utime + stime of its process) while 8 tasks run, in the same
   run: with no console page ever opened (the baseline: the stack without the console), with
   five overview pages open, and with five task pages open (each streaming a task's tokens).

``--real``: the stack `make run` starts (the roster's models), one demo task from the CLI:
it must appear, stream and show its trace (the issue's done-when), timed the same way.
``--screenshots DIR``: PNGs of the overview and a finished task's page (docs/console.md).
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from _common import emit, pct

from shared import subjects
from shared.contracts import TaskSubmit, new_id
from tests.console.stack import ConsoleStack, code_reply, launch_chromium

TASKS = 8
PAGES = 5
WATCH_JS = """ids => { window.__seen = window.__seen || {};
  const look = () => { for (const id of ids) { if (!window.__seen[id] && document.getElementById('task-' + id)) window.__seen[id] = Date.now(); } };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true}); look(); }"""


ANY_ROW_JS = """() => { window.__rows = {};
  new MutationObserver(() => { for (const a of document.querySelectorAll('a.task-row')) {
    const id = a.id.slice(5); if (!(id in window.__rows)) window.__rows[id] = Date.now(); } })
  .observe(document.body, {childList: true, subtree: true}); }"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def connect(stack: ConsoleStack) -> nats.NATS:
    """The bus as the CLI reaches it (user "cli" when the stack runs with NATS auth)."""
    url = f"nats://127.0.0.1:{stack.nats_port}"
    try:
        creds = json.loads((stack.state / "credentials.json").read_text())
    except OSError:
        return await nats.connect(url)
    return await nats.connect(url, user="cli", password=creds["cli"])


def in_thread(coro: Any) -> Any:
    """Run a coroutine to its end in a thread of its own: Playwright's sync API holds this
    thread's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def submit(stack: ConsoleStack, ids: list[str], kinds: list[str]) -> dict[str, float]:
    """Publish tasks with these ids as the CLI does; each one's epoch ms just before its publish."""
    nc = await connect(stack)
    js = nc.jetstream()
    sent = {}
    for tid, kind in zip(ids, kinds, strict=True):
        task = TaskSubmit(task_id=tid, kind=kind, text="Write f()." if kind == "code" else "Hello.", timeout_s=300)  # type: ignore[arg-type]
        sent[tid] = time.time() * 1000
        await js.publish(subjects.TASK_SUBMIT, task.model_dump_json().encode(), stream=subjects.TASKS_STREAM,
                         headers={"Nats-Msg-Id": tid})
    await nc.close()
    return sent


async def wait_done(stack: ConsoleStack, ids: list[str], timeout_s: float = 300.0) -> None:
    """Until the task-state KV records every task final."""
    nc = await connect(stack)
    kv = await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)
    pending = set(ids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for tid in list(pending):
            try:
                entry = await kv.get(tid)
            except Exception:
                continue
            if json.loads(entry.value or b"{}").get("status") in ("done", "failed", "timeout", "cancelled", "rejected"):
                pending.discard(tid)
        await asyncio.sleep(0.2)
    await nc.close()
    if pending:
        raise RuntimeError(f"{len(pending)} tasks did not end")


class StreamClock:
    """A plain HTTP client on the overview's event stream, noting when each task's row
    arrives: submit -> here is the bus, the router and the gateway; here -> the page's DOM
    is the browser."""

    def __init__(self, url: str) -> None:
        self.arrived: dict[str, float] = {}
        self.url = url
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with httpx.stream("GET", f"{self.url}/sse/overview", timeout=None) as r:
            for line in r.iter_lines():
                for tid in re.findall(r'id="task-(t-[0-9a-f]+)"', line):
                    self.arrived.setdefault(tid, time.time() * 1000)


class KvClock:
    """The baseline: a raw nats-py watcher of the task-state KV, noting when the router's
    first record of each task arrives (the earliest any client can know of it)."""

    def __init__(self, stack: ConsoleStack) -> None:
        self.arrived: dict[str, float] = {}
        self.stack = stack
        threading.Thread(target=asyncio.run, args=(self._watch(),), daemon=True).start()

    async def _watch(self) -> None:
        nc = await connect(self.stack)
        watcher = await (await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)).watchall()
        while True:
            with contextlib.suppress(nats.errors.TimeoutError):
                entry = await watcher.updates(timeout=60)
                if entry is not None:
                    self.arrived.setdefault(entry.key, time.time() * 1000)


def phase(stack: ConsoleStack, pid: int, on_submit: Any = None) -> dict[str, Any]:
    """8 tasks at once (code and reason alternating); the gateway's CPU seconds and the wall
    time until all ended. ``on_submit(ids)`` runs right after they are published."""
    ids = [new_id("t-") for _ in range(TASKS)]
    kinds = ["code" if i % 2 == 0 else "reason" for i in range(TASKS)]
    c0, t0 = cpu_s(pid), time.monotonic()
    sent = in_thread(submit(stack, ids, kinds))
    if on_submit is not None:
        on_submit(ids)
    in_thread(wait_done(stack, ids))
    return {"gateway_cpu_s": round(cpu_s(pid) - c0, 3), "wall_s": round(time.monotonic() - t0, 2), "ids": ids, "sent": sent}


def open_pages(browser: Any, url: str, n: int, cookie: dict[str, str] | None = None) -> list[Any]:
    """``n`` users: one browser context each (its own connections, as separate people)."""
    pages = []
    for _ in range(n):
        ctx = browser.new_context(viewport={"width": 1360, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        pages.append(page)
    for page in pages:
        page.wait_for_selector("#agents tr.agent")
    return pages


def close_pages(pages: list[Any]) -> None:
    for page in pages:
        page.context.close()


def scripted(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-console-"))
    stack = ConsoleStack(root, replies=[code_reply(v, pad=8) for v in (3, 5, 4, 8)], console="read", token_delay_s=0.02)
    stack.up()
    try:
        pid = stack.gateway_pid()
        time.sleep(2.0)
        baseline = phase(stack, pid)  # no page was ever opened: the console costs nothing yet
        with sync_playwright() as p:
            browser = launch_chromium(p)
            pages = open_pages(browser, stack.console_url, PAGES)
            time.sleep(2.0)

            def watch(ids: list[str]) -> None:
                for page in pages:
                    page.evaluate(WATCH_JS, ids)

            # Latency: the pages watch for the rows before the tasks are even submitted.
            lat: list[float] = []
            added: list[float] = []  # the raw KV watcher -> the row on the page (the console's own part)
            streamed: list[float] = []  # submit -> the row's event at a plain HTTP client
            clock, kv_clock = StreamClock(stack.console_url), KvClock(stack)
            recorded: list[float] = []  # submit -> the raw KV watcher (the bus and the router)
            time.sleep(1.0)
            for _ in range(args.rounds):
                ids = [new_id("t-") for _ in range(TASKS)]
                watch(ids)
                sent = in_thread(submit(stack, ids, ["reason"] * TASKS))
                time.sleep(3.0)  # every row is on every page by then, or it counts as missing
                streamed += [clock.arrived[t] - sent[t] for t in ids if t in clock.arrived]
                recorded += [kv_clock.arrived[t] - sent[t] for t in ids if t in kv_clock.arrived]
                added += [seen_at - kv_clock.arrived[t] for page in pages
                          for t, seen_at in page.evaluate("window.__seen").items() if t in kv_clock.arrived and t in ids]
                for page in pages:
                    seen = page.evaluate("window.__seen")
                    lat += [seen[t] - sent[t] for t in ids if t in seen]
            with_pages = phase(stack, pid)
            if args.screenshots:
                shots = Path(args.screenshots)
                shots.mkdir(parents=True, exist_ok=True)
                pages[0].screenshot(path=str(shots / "console-overview.png"))
                pages[0].goto(f"{stack.console_url}/tasks/{with_pages['ids'][0]}")
                pages[0].wait_for_selector("#trace .span-row")
                pages[0].wait_for_function("() => !document.querySelector('#trace').hasAttribute('hx-get')")
                pages[0].screenshot(path=str(shots / "console-task.png"), full_page=True)
            close_pages(pages)
            # Five task pages, each following one running task's token stream.
            task_pages: list[Any] = []

            def follow(ids: list[str]) -> None:
                for tid in ids[:PAGES]:
                    ctx = browser.new_context()
                    page = ctx.new_page()
                    page.goto(f"{stack.console_url}/tasks/{tid}")
                    task_pages.append(page)

            with_task_pages = phase(stack, pid, on_submit=follow)
            finished_pages = sum(1 for pg in task_pages if pg.locator("#result-status").count())
            close_pages(task_pages)
            browser.close()
        missing = TASKS * PAGES * args.rounds - len(lat)
        extra_cpu = with_pages["gateway_cpu_s"] - baseline["gateway_cpu_s"]
        return {
            "bench": "console", "mode": "scripted", "pages": PAGES, "tasks": TASKS, "rounds": args.rounds,
            "submit_to_visible_ms": {"p50": round(pct(lat, 50)), "p95": round(pct(lat, 95)), "max": round(max(lat)),
                                     "n": len(lat), "missing": missing},
            "submit_to_kv_watcher_ms": {"p50": round(pct(recorded, 50)), "p95": round(pct(recorded, 95)), "n": len(recorded)},
            "submit_to_event_stream_ms": {"p50": round(pct(streamed, 50)), "p95": round(pct(streamed, 95)), "n": len(streamed)},
            "console_added_ms": {"p50": round(pct(added, 50)), "p95": round(pct(added, 95)), "n": len(added)},
            "goal_visible_p95_ms": 1000, "goal_met": bool(lat) and pct(lat, 95) < 1000 and missing == 0,
            "gateway_cpu_s": {"no_console": baseline["gateway_cpu_s"], "overview_pages": with_pages["gateway_cpu_s"],
                              "task_pages": with_task_pages["gateway_cpu_s"]},
            "wall_s": {"no_console": baseline["wall_s"], "overview_pages": with_pages["wall_s"],
                       "task_pages": with_task_pages["wall_s"]},
            "console_cpu_share_of_a_core": round(extra_cpu / with_pages["wall_s"], 4),
            "task_pages_cpu_share_of_a_core": round((with_task_pages["gateway_cpu_s"] - baseline["gateway_cpu_s"])
                                                    / with_task_pages["wall_s"], 4),
            "task_pages_with_result": finished_pages,
            "load": os.getloadavg()[0],
        }
    finally:
        stack.down()


def real(args: argparse.Namespace) -> dict[str, Any]:
    """The stack as `make run` starts it (no scripted engine): the demo task from the CLI
    must appear on an open console page, stream its tokens and show its trace."""
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-console-real-"))
    stack = ConsoleStack(root, replies=["unused"], console="read")
    for k in ("SYNDICATE_ENGINE_SCRIPT", "SYNDICATE_ENGINE_SCRIPT_DELAY", "SYNDICATE_ENGINE_SCRIPT_SLOTS",
              "SYNDICATE_ROUTER_CLASSIFIER", "SYNDICATE_EVOLVE_SCAN_S"):
        stack.env.pop(k, None)
    t_up = time.monotonic()
    stack.up()
    up_s = time.monotonic() - t_up
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(600_000)
            page.goto(stack.console_url)
            page.wait_for_selector("#agents tr.agent .badge.ready")
            time.sleep(3.0)  # every service has answered a ping round
            agents = page.locator("#agents tr.agent").evaluate_all(
                "rows => rows.map(r => ({service: r.dataset.service, model: r.querySelector('.model').textContent,"
                " cores: r.querySelector('.cores').textContent, state: r.querySelector('.badge').textContent}))")
            page.evaluate(ANY_ROW_JS)
            demo = ("Write a Python function is_prime(n) that returns True when the integer n is a prime number "
                    "and False otherwise.")
            proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "submit", "--kind", "code", demo, "--json"],
                                    env=stack.env, cwd=str(Path(__file__).resolve().parent.parent),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # The CLI makes its own task id: the row it made says when the task was submitted.
            row = page.wait_for_selector("#task-list a.task-row")
            first_id = (row.get_attribute("id") or "").removeprefix("task-")
            submitted_ms = float(row.query_selector("time").get_attribute("data-ts")) * 1000  # type: ignore[union-attr]
            seen = page.evaluate("window.__rows")[first_id]
            sent = submitted_ms
            row.click()
            page.wait_for_selector("#task-page")
            streamed = 0
            if page.locator("#tokens").count():
                page.wait_for_function("() => document.querySelector('#tokens').textContent.length > 20"
                                       " || document.querySelector('#result-status') !== null")
                streamed = page.evaluate("document.querySelector('#tokens') ? document.querySelector('#tokens').textContent.length : 0")
            page.wait_for_selector("#result-status")
            status = page.inner_text("#result-status")
            page.wait_for_selector("#trace .span-row")
            page.wait_for_function("() => !document.querySelector('#trace').hasAttribute('hx-get')")
            services = sorted(set(page.locator("#trace .span-row").evaluate_all("rs => rs.map(r => r.dataset.service)")))
            if args.screenshots:
                shots = Path(args.screenshots)
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "console-task-real.png"), full_page=True)
                page.goto(stack.console_url)
                page.wait_for_selector("#agents tr.agent")
                time.sleep(1.5)
                page.screenshot(path=str(shots / "console-overview-real.png"))
            proc.communicate(timeout=600)
            browser.close()
        return {
            "bench": "console", "mode": "real", "up_s": round(up_s, 1), "agents": agents, "task_id": first_id,
            "submit_to_visible_ms": round(seen - sent), "streamed_chars_seen": streamed, "status": status,
            "trace_services": services, "load": os.getloadavg()[0],
        }
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds of 8 tasks each")
    parser.add_argument("--quick", action="store_true", help="one latency round")
    parser.add_argument("--screenshots", default=None, help="write console-overview.png and console-task.png here")
    parser.add_argument("--real", action="store_true", help="the roster's models (as make run), one demo task")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    emit(real(args) if args.real else scripted(args))


if __name__ == "__main__":
    main()
