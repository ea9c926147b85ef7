"""The NATS users and permissions of compose/k8s are enough for the real services: every
service runs as its own user against a nats-server with the committed auth.conf, and a
code task, a reasoning task, an ingest, the gateway's /metrics and the health probe work."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from shared import registry
from syndicate import deploy
from syndicate.nats_server import nats_server_binary, wait_port
from tests.conftest import REPO, WAIT_S, Services, free_port, write_script
from tests.integration.test_spine import CODE, TESTS

from .test_nats_config import password_env

pytestmark = pytest.mark.integration


class AuthNats:
    """nats-server with JetStream and the generated users; ``url`` is the CLI user's."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.passwords = password_env()
        shutil.copy(REPO / "infra" / "nats" / "auth.conf", root / "auth.conf")
        (root / "nats.conf").write_text(
            f"listen: 127.0.0.1:{self.port}\njetstream {{ store_dir: {root / 'js'} }}\ninclude ./auth.conf\n"
        )
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(root / "nats.conf")], env=self.passwords,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc, timeout_s=WAIT_S)
        self.url = self.url_for(registry.CLI_USER)

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[deploy.password_env(user)]}@127.0.0.1:{self.port}"


@pytest.fixture
def stack(tmp_path: Path):
    server = AuthNats(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    services = Services(server, state)  # type: ignore[arg-type]
    yield server, services
    services.stop()
    server.proc.terminate()
    server.proc.wait(10)


def test_services_work_as_their_own_nats_users(stack, tmp_path: Path) -> None:
    server, services = stack

    def start(name: str, module: str, **env: str) -> None:
        services.start(name, module, SYNDICATE_NATS_URL=server.url_for(name), **env)

    start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
    start("coder-agent", "services.coder_agent", SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "c.json", [CODE, TESTS]))
    start("reasoner-agent", "services.reasoner_agent", SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "r.json", ["Paris."]))
    start("retriever", "services.retriever", SYNDICATE_LOG_JSON="false")
    port = free_port()
    start("gateway", "services.gateway", SYNDICATE_GATEWAY_PORT=str(port))
    names = ["router", "code-sandbox", "coder-agent", "reasoner-agent", "retriever", "gateway"]
    services.wait_ready(names)

    code = services.cli("submit", "--kind", "code", "Write square(x).", "--json")
    assert '"status": "done"' in code.stdout, code.stdout + code.stderr + services.log("router")[-2000:]
    reason = services.cli("submit", "--kind", "reason", "What is the capital of France?", "--json")
    assert '"status": "done"' in reason.stdout and "Paris" in reason.stdout, reason.stdout + reason.stderr

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("Liquidators repay unhealthy loans and receive collateral at a discount.\n")
    ingest = services.cli("ingest", str(docs), "--collection", "notes", "--json")
    assert ingest.returncode == 0 and '"files": 1' in ingest.stdout, ingest.stdout + ingest.stderr

    services.wait_http("gateway", f"http://127.0.0.1:{port}/metrics")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()  # noqa: S310
    assert "syndicate" in metrics

    # The container healthcheck, run as each service's own user (it answers as soon as a
    # reply comes; the window only bounds a probe of a service that is down).
    for name in names:
        probe = subprocess.run(
            [sys.executable, "-m", "shared.health", name, "--wait", "20"],
            env=services.env(SYNDICATE_NATS_URL=server.url_for(name)), cwd=REPO, capture_output=True, text=True,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
    for name in names:
        assert "ermissions violation" not in services.log(name), f"{name} was refused a subject:\n{services.log(name)[-1500:]}"
