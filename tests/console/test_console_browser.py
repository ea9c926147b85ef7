"""The console in a real browser (Debian's chromium through Playwright) against a real local
stack (`syndicate up --detach`: supervisor, nats-server, every service, agents pinned) whose
agents answer from scripted models. One browser session walks what a user does: sign in
with the gateway's key, see every agent with its model and cores, watch a task submitted
from the CLI appear, stream and show its trace, submit and cancel one from the page, and
watch an evolution run's curve grow."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import registry
from tests.console.stack import ConsoleStack, code_reply, launch_chromium

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
sync_api = pytest.importorskip("playwright.sync_api")

KEY = "console-browser-key"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    root = tmp_path_factory.mktemp("console")
    replies = [code_reply(v, pad=12) for v in (3, 5, 4, 8, 6, 9)]
    s = ConsoleStack(root, replies=replies, api_key=KEY, console="write", token_delay_s=0.03)
    try:
        s.up()
        yield s
    finally:
        s.down()


@pytest.fixture(scope="module")
def page(stack: ConsoleStack) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.on("dialog", lambda d: d.accept())  # the cancel button asks first
        sign_in(pg, stack)
        try:
            yield pg
        finally:
            browser.close()


def spec(tmp: Path) -> Path:
    (tmp / "seed.py").write_text("def f():\n    return 1\n")
    (tmp / "score.py").write_text("from candidate import f\nprint(f())\n")
    path = tmp / "spec.toml"
    path.write_text('name = "bigger"\ntask = "Make f() return a larger number."\ngenerations = 3\npopulation = 2\n'
                    'children = 2\n[seed]\nfile = "seed.py"\n[scorer]\nfile = "score.py"\n[limits]\nscore_wall_s = 5\n')
    return path


def sign_in(page: Any, stack: ConsoleStack) -> None:
    """The gateway has an API key: the console asks for it (a wrong one is refused)."""
    page.goto(stack.console_url)
    assert "/ui/login" in page.url
    page.fill("#key", "not the key")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-failed")
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(stack.console_url)


def test_every_agent_shows_its_model_and_cores(stack: ConsoleStack, page: Any, tmp_path: Path) -> None:
    page.goto(stack.console_url)
    page.wait_for_selector("#agents tr.agent")
    for svc in registry.SERVICES:
        page.wait_for_selector(f'#agents tr.agent[data-service="{svc.name}"] .badge.ready')
    for svc in registry.SERVICES:
        if svc.agent is None:
            continue
        row = page.locator(f'#agents tr.agent[data-service="{svc.name}"]')
        assert row.locator(".model").inner_text() == f"scripted-{svc.role}"
        assert re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", row.locator(".cores").inner_text())
    assert page.locator("#mode").inner_text() == "can submit and cancel"
    page.screenshot(path=str(tmp_path / "overview.png"))
    assert (tmp_path / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cli_task_appears_streams_and_shows_its_trace(stack: ConsoleStack, page: Any) -> None:
    page.goto(stack.console_url)
    page.wait_for_selector("#live")
    out = stack.cli("submit", "--kind", "code", "Write f() that returns a small number.", "--no-wait")
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip().splitlines()[-1]
    row = page.wait_for_selector(f"#task-{task_id}")  # pushed to the open page, no reload
    row.click()
    page.wait_for_url(f"**/ui/tasks/{task_id}")
    # Live part: tokens arrive while the task runs (the page opened mid-task), then the result.
    page.wait_for_function("() => document.querySelector('#tokens') && document.querySelector('#tokens').textContent.includes('def f')"
                           " || document.querySelector('#result-status') !== null")
    page.wait_for_selector("#result-status")
    assert page.inner_text("#result-status") == "done"
    assert "def f" in page.inner_text("#code")
    assert page.locator("#checks .badge").first.inner_text() == "ok"
    # The trace from the local store, as a waterfall across the services of the task.
    page.wait_for_selector("#trace .span-row")
    page.wait_for_function("() => document.querySelector('#trace') && !document.querySelector('#trace').hasAttribute('hx-get')")
    services = set(page.locator("#trace .span-row").evaluate_all("rows => rows.map(r => r.dataset.service)"))
    assert {"cli", "router", "coder-agent", "code-sandbox"} <= services


def test_tokens_stream_into_an_open_task_page(stack: ConsoleStack, page: Any) -> None:
    """A task page opened while the task runs: its text grows before the result lands."""
    out = stack.cli("submit", "--agent", "reasoner", "Say something long.", "--no-wait")
    task_id = out.stdout.strip().splitlines()[-1]
    page.goto(f"{stack.console_url}/tasks/{task_id}")
    if page.locator("#tokens").count():  # still running when the page opened
        page.wait_for_function("() => document.querySelector('#tokens').textContent.length > 0"
                               " || document.querySelector('#result-status') !== null")
        seen = page.evaluate("document.querySelector('#tokens').textContent.length")
        assert seen > 0, "the result came, but no token was streamed to the open page"
        page.wait_for_selector("#result-status")
    assert page.inner_text("#result-status") == "done"
    assert "return" in page.inner_text("#answer")


def test_submit_and_cancel_from_the_page(stack: ConsoleStack, page: Any) -> None:
    page.goto(stack.console_url)
    page.fill("#task-text", "Explain the bus, at length.")
    page.select_option("#task-kind", "agent:reasoner")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r".*/ui/tasks/t-[0-9a-f]+$"))
    task_id = page.url.rsplit("/", 1)[-1]
    page.click("#cancel-button")
    page.wait_for_selector("#result-status")
    assert page.inner_text("#result-status") in ("cancelled", "done")  # the scripted answer may win the race
    # It is in the list, with its final status.
    page.goto(stack.console_url)
    assert page.locator(f"#task-{task_id}").get_attribute("data-status") in ("cancelled", "done")


def test_review_from_the_page(stack: ConsoleStack, page: Any) -> None:
    """A task submitted for review stops with its proposed result; approving it on the page
    ends it done (docs/threads.md)."""
    page.goto(stack.console_url)
    page.fill("#task-text", "Write f() returning a small number, and let me check it first.")
    page.select_option("#task-kind", "code")
    page.check("#task-review")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r".*/ui/tasks/t-[0-9a-f]+$"))
    page.wait_for_selector("#review-form")
    assert page.inner_text("#status-badge") == "input_required" and "def f" in page.inner_text("#code")
    page.click("#review-button")  # approve is the default decision
    page.wait_for_selector("#result-status")
    assert page.inner_text("#result-status") == "done"


def test_an_evolution_runs_curve_grows(stack: ConsoleStack, page: Any, tmp_path: Path) -> None:
    run_id = stack.cli("evolve", str(spec(tmp_path)), "--detach").stdout.strip().splitlines()[-1]
    assert run_id.startswith("evo-")
    deadline = time.monotonic() + 60
    while True:
        response = page.goto(f"{stack.console_url}/evolve/{run_id}")
        if response is not None and response.status == 200:
            break
        assert time.monotonic() < deadline, "the run never showed"
        time.sleep(0.5)
    def samples() -> int:  # programs evaluated so far (dots, and ticks for those without a score)
        return int(page.inner_text("#run-samples").split()[0])

    first = samples()
    # The chart is replaced as candidates are scored, without a reload.
    page.wait_for_function(f"() => parseInt(document.querySelector('#run-samples').textContent) > {first}")
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'done'", timeout=180_000)
    assert samples() >= 4 and int(page.get_attribute("#score-chart", "data-dots") or 0) >= 2
    assert page.locator("#lineage li").count() >= 2 and "return" in page.inner_text("#best-code")
    page.goto(f"{stack.console_url}/evolve")
    assert page.locator(f"#run-{run_id} .badge").inner_text() == "done"


def test_the_study_page_shows_the_latest_report(stack: ConsoleStack, page: Any) -> None:
    page.goto(f"{stack.console_url}/study")
    assert page.locator("#study-table tbody tr").count() >= 2  # the repository's measured study
    assert page.evaluate("document.querySelector('#study-plot').naturalWidth") > 100
