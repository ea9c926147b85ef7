"""The local stack runs NATS with one user per service and the subject permissions of
syndicate/deploy.py: credentials are generated per stack (0600, removed at stop), every
service works as its own user, the CLI user may submit, cancel, read results and ping
health, and out-of-permission publishes and subscribes are refused by the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat

import nats
import pytest

from shared import registry, subjects
from shared.contracts import CancelRequest, TaskSubmit
from shared.registry import SERVICES

from .conftest import CODE, Client

pytestmark = pytest.mark.integration

ALL = [spec.name for spec in SERVICES]


async def violations(settings, action, expected: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """Run ``action(nc)`` as the settings' user; the permission errors the server sent.

    The server's -ERR arrives before the flush's PONG, but nats-py hands it to the error
    callback as a separate task: wait for the ``expected`` errors rather than a fixed time
    a busy machine may overrun (and a moment more, to see any unexpected one)."""
    errors: list[str] = []
    enough = asyncio.Event()

    def refused() -> list[str]:
        return [e.lower() for e in errors if "ermissions" in e]

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        if len(refused()) >= expected:
            enough.set()

    if expected == 0:
        enough.set()
    nc = await nats.connect(settings.nats_servers, error_cb=on_error, allow_reconnect=False)
    try:
        await action(nc)
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), 30)
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return refused()


def test_stack_users_and_permissions(make_stack, tmp_path) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([CODE]))
    stack = make_stack(ALL, {"SYNDICATE_ENGINE_SCRIPT": str(script)})  # every service, each as its own user

    # Credentials: one password per user of the deploy table, this user only, in the state dir.
    creds_path = stack.state / "credentials.json"
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = json.loads(creds_path.read_text())
    assert set(creds) == {user for user, _ in registry.nats_users()}
    # The server's config names passwords by variable: no secret in the file.
    conf = next((stack.state / "nats").glob("*.conf")).read_text()
    assert "authorization" in conf and all(pw not in conf for pw in creds.values())

    # The CLI (stack credentials found through SYNDICATE_STATE_DIR) submits and reads results.
    out = stack.cli("submit", "--kind", "code", "Write square(x).", "--json")
    assert out.returncode == 0, out.stdout + out.stderr + stack.log("router")[-1500:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "done"
    again = stack.cli("result", result["task_id"], "--json")
    assert json.loads(again.stdout)["status"] == "done"
    status = json.loads(stack.cli("status", "--json").stdout)
    assert status["auth"] is True
    assert set(ALL) <= {r["service"] for r in status["services"] if r["state"] in ("ready", "degraded")}

    async def scenario() -> None:
        cli, sandbox, coder = stack.settings("cli"), stack.settings("code-sandbox"), stack.settings("coder-agent")

        # Anonymous and wrong-password clients are refused outright.
        anonymous = stack.settings("nobody")
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(anonymous.nats_servers, allow_reconnect=False, max_reconnect_attempts=0)
        # A near miss that can never be the password: its first letter changed (a fixed
        # letter in its place would equal it 1 time in 52).
        near_miss = ("y" if creds["cli"][0] == "x" else "x") + creds["cli"][1:]
        wrong = cli.model_copy(update={"nats_password": near_miss})
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(wrong.nats_servers, allow_reconnect=False, max_reconnect_attempts=0)

        # cli: submit, cancel, health are allowed (no violation) ...
        task = TaskSubmit(kind="code", text="Write square(x).")  # done, or cancelled first

        async def allowed(nc: nats.NATS) -> None:
            await nc.jetstream().publish(subjects.TASK_SUBMIT, task.model_dump_json().encode(),
                                         headers={"Nats-Msg-Id": task.task_id})
            await nc.publish(subjects.TASK_CANCEL, CancelRequest(task_id=task.task_id).model_dump_json().encode())
            await nc.publish(subjects.HEALTH_PING, b"{}")
            kv = await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)
            assert b'"done"' in (await kv.get(result["task_id"])).value  # reads task state

        assert await violations(cli, allowed) == []

        # ... but it may not impersonate the router or an agent.
        async def cli_forbidden(nc: nats.NATS) -> None:
            await nc.publish(subjects.JOB_CODER, b"{}")
            await nc.publish(subjects.STEP_RESULT, b"{}")
            await nc.subscribe(subjects.JOB_CODER)

        refused = await violations(cli, cli_forbidden, expected=3)
        assert any("publish to" in e and subjects.JOB_CODER in e for e in refused), refused
        assert any("publish to" in e and subjects.STEP_RESULT in e for e in refused), refused
        assert any("subscription to" in e and subjects.JOB_CODER in e for e in refused), refused

        # code-sandbox only answers requests: it may not submit tasks or read jobs.
        async def sandbox_forbidden(nc: nats.NATS) -> None:
            await nc.publish(subjects.TASK_SUBMIT, b"{}")
            await nc.subscribe(subjects.JOB_REASONER)
            await nc.subscribe(subjects.task_events("*"))

        refused = await violations(sandbox, sandbox_forbidden, expected=3)
        assert any("publish to" in e and subjects.TASK_SUBMIT in e for e in refused), refused
        assert any("subscription to" in e and subjects.JOB_REASONER in e for e in refused), refused
        assert any("subscription to" in e and "task.events" in e for e in refused), refused

        # coder-agent may publish step results but not dispatch jobs to the reasoner.
        async def coder_forbidden(nc: nats.NATS) -> None:
            await nc.publish(subjects.JOB_REASONER, b"{}")

        refused = await violations(coder, coder_forbidden, expected=1)
        assert any("publish to" in e and subjects.JOB_REASONER in e for e in refused), refused

        client = await Client().connect(cli.nats_servers)
        try:
            states = await client.wait_final([task.task_id])
            assert states[task.task_id].status in ("done", "cancelled")
        finally:
            await client.close()

    asyncio.run(scenario())
    for name in ALL:  # the services' own traffic stayed inside their permissions
        assert "permissions violation" not in stack.log(name).lower(), stack.log(name)[-1500:]

    stack.stop()
    assert not creds_path.exists(), "credentials outlived their stack"
