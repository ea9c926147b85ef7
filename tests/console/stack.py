"""A local stack as `syndicate up --detach` starts it (supervisor, nats-server, every
service of the registry, agents pinned), with scripted models, and Debian's chromium
driven by Playwright: what the console's tests and bench/console.py look at.

Playwright's own browser download cannot be reached here: the browser is the system's
``/usr/bin/chromium`` (infra/scripts/install-system-deps.sh installs it), started with
the flags this machine needs (no background networking: its closed network refuses it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SYNDICATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def code_reply(value: int, pad: int = 6) -> str:
    """A scripted model reply every agent can use: a program with its own check (the coder
    keeps it, the sandbox runs it, an evolution scorer imports ``f``), padded with comment
    lines so its tokens stream for a moment."""
    comments = "".join(f"    # step {i}: keep the value small and exact\n" for i in range(pad))
    return f"Here it is:\n```python\ndef f():\n{comments}    return {value}\n\n\nassert f() == {value}\n```"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConsoleStack:
    """One local stack in its own state dir and ports, with scripted agents."""

    def __init__(self, root: Path, *, replies: list[str], api_key: str | None = None, console: str = "write",
                 token_delay_s: float = 0.02, slots: int = 4) -> None:
        self.root = root
        self.state = root / "state"
        self.gateway_port = free_port()
        self.nats_port = free_port()
        script = root / "script.json"
        script.write_text(json.dumps(replies))
        self.api_key = api_key
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATE_", "OTEL_EXPORTER"))}
        env.update({
            "SYNDICATE_STATE_DIR": str(self.state), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": str(token_delay_s),
            "SYNDICATE_ENGINE_SCRIPT_SLOTS": str(slots), "SYNDICATE_ROUTER_CLASSIFIER": "0",
            "SYNDICATE_GATEWAY_PORT": str(self.gateway_port), "SYNDICATE_GATEWAY_CONSOLE": console,
            # short evolution leases, so a run's generations follow each other quickly
            "SYNDICATE_EVOLVE_SCAN_S": "1",
        })
        if api_key:
            env["SYNDICATE_GATEWAY_API_KEY"] = api_key
        self.env = env
        self.console_url = ""

    def cli(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "syndicate.cli", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def up(self) -> str:
        """Start the stack; return the console URL `syndicate up` printed."""
        out = self.cli("up", "--detach", "--port", str(self.nats_port), "--wait", "240", timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"syndicate up failed:\n{out.stdout}\n{out.stderr}\n{self.logs()}")
        found = re.search(r"console:\s+(http://\S+/ui)", out.stdout)
        if not found:
            raise RuntimeError(f"syndicate up printed no console URL:\n{out.stdout}")
        self.console_url = found.group(1)
        return self.console_url

    def down(self) -> None:
        self.cli("down", timeout=60)

    @property
    def base(self) -> str:
        return self.console_url.removesuffix("/ui")

    def logs(self, tail: int = 1500) -> str:
        logs = self.state / "logs"
        if not logs.is_dir():
            return ""
        return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in sorted(logs.glob("*.log")))

    def gateway_pid(self) -> int:
        record: dict[str, Any] = json.loads((self.state / "stack.json").read_text())
        return int(record["services"]["gateway"]["pid"])


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, through Playwright (a fresh temporary profile each launch)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
