"""NATS server configs: generated users/permissions are committed as generated, both
configs parse with the real nats-server, and a real server enforces the permissions."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from shared import registry
from shared import subjects as s
from syndicate import deploy
from syndicate.nats_server import nats_server_binary, wait_port
from tests.conftest import free_port

from .conftest import REPO

CONFIGS = {"compose": REPO / "infra" / "nats", "k8s": REPO / "k8s" / "base" / "nats"}


def password_env() -> dict[str, str]:
    """A full set of fresh passwords, as the server's environment would hold them."""
    pairs = (line.split("=", 1) for line in deploy.credentials_env().splitlines() if "=" in line and not line.startswith("#"))
    return dict(pairs)


def test_committed_auth_files_are_the_generated_ones() -> None:
    expected = deploy.render_nats_auth()
    for where, folder in CONFIGS.items():
        assert (folder / "auth.conf").read_text() == expected, f"{where}: run `syndicate deploy nats-auth --write`"


@pytest.mark.parametrize("where", sorted(CONFIGS))
def test_config_parses_with_nats_server(where: str, tmp_path: Path) -> None:
    for name in ("nats.conf", "auth.conf"):
        shutil.copy(CONFIGS[where] / name, tmp_path / name)
    env = {**os.environ, **password_env(), "POD_NAME": "nats-0"}
    ok = subprocess.run([nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    env.pop(deploy.password_env("code-sandbox"))
    missing = subprocess.run([nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "NATS_CODE_SANDBOX_PASSWORD" in missing.stderr


def test_generated_passwords_are_plain_strings_for_nats() -> None:
    pw = password_env()
    assert len(pw) == len(registry.nats_users())
    assert all(v[0].isalpha() and v.isalnum() and len(v) == 32 for v in pw.values())
    assert len(set(pw.values())) == len(pw)


class AuthServer:
    """A real nats-server running the committed auth.conf with fresh passwords."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.passwords = password_env()
        shutil.copy(CONFIGS["compose"] / "auth.conf", root / "auth.conf")
        (root / "nats.conf").write_text(
            f"listen: 127.0.0.1:{self.port}\njetstream {{ store_dir: {root / 'js'} }}\ninclude ./auth.conf\n"
        )
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(root / "nats.conf")], env={**os.environ, **self.passwords},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc)

    async def connect(self, user: str, password: str | None = None, errors: list | None = None) -> nats.NATS:
        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.append(str(exc))

        pw = password or self.passwords[deploy.password_env(user)]
        return await nats.connect(
            f"nats://{user}:{pw}@127.0.0.1:{self.port}", allow_reconnect=False, max_reconnect_attempts=0, error_cb=on_error
        )


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path)
    yield server
    server.proc.terminate()
    server.proc.wait(10)


@pytest.mark.integration
async def test_real_server_enforces_service_permissions(auth_server: AuthServer) -> None:
    router = await auth_server.connect("router")
    watch = await router.subscribe(s.TASK_SUBMIT)
    await router.flush()

    cli = await auth_server.connect(registry.CLI_USER)
    await cli.publish(s.TASK_SUBMIT, b"from cli")
    assert (await watch.next_msg(timeout=5)).data == b"from cli"

    errors: list[str] = []
    sandbox = await auth_server.connect("code-sandbox", errors=errors)
    await sandbox.publish(s.TASK_SUBMIT, b"from sandbox")
    await sandbox.flush()  # the server's -ERR arrives before the PONG ...
    for _ in range(100):  # ... but nats-py hands it to the error callback as a separate task
        if any("permissions violation" in e.lower() for e in errors):
            break
        await asyncio.sleep(0.05)
    assert any("permissions violation" in e.lower() for e in errors), errors

    # code-sandbox may answer requests it receives (allow_responses), and nothing else.
    async def answer(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"verdict")

    await sandbox.subscribe(s.SANDBOX_EXEC, queue=s.QUEUE_SANDBOX, cb=answer)
    await sandbox.flush()
    coder = await auth_server.connect("coder-agent")
    assert (await coder.request(s.SANDBOX_EXEC, b"code", timeout=5)).data == b"verdict"

    with pytest.raises(Exception):  # noqa: B017 - nats-py raises auth errors through several types
        await auth_server.connect("router", password="wrong-password")
    for nc in (router, cli, sandbox, coder):
        await nc.close()
