"""What the evolution benchmarks share: a stack of their own (`syndicate up` with its own
state dir and ports, as `make run` starts it), extra coder-agent copies, `syndicate
evolve` through the CLI as a user runs it, and the judge that scores any final program on
a spec's held-out stage with the spec's own scorer (the same subprocess for every arm)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.evolve.spec import load_spec  # noqa: E402

PY = sys.executable
SPECS = {
    "weibull": REPO / "examples/evolve/binpack-weibull/spec.toml",
    "or": REPO / "examples/evolve/binpack-or/spec.toml",
}
BOX_PYTHON = "/usr/bin/python3"  # the interpreter code-sandbox runs programs with (numpy from Debian)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise ValueError(f"no JSON line in: {text[-2000:]}")


class Stack:
    """A local stack of its own: every service of the registry (or ``only``) under the
    supervisor, plus coder-agent copies started beside it."""

    def __init__(self, root: Path, only: str | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.gateway_port = free_port()
        self.only = only
        self.extra: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "SYNDICATE_STATE_DIR": str(root / "state"),
                    "SYNDICATE_GATEWAY_PORT": str(self.gateway_port), **(env or {})}
        self.env.pop("SYNDICATE_NATS_URL", None)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        # No SYNDICATE_NATS_URL: the CLI finds the stack (URL and its own NATS password) in the
        # state dir, as after `make run`; with the URL set it would connect without a password.
        return subprocess.run([PY, "-m", "syndicate.cli", *args], env=self.env,
                              cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def up(self) -> None:
        args = ["up", "--detach", "--port", str(self.port)] + (["--only", self.only] if self.only else [])
        out = self.cli(*args, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"syndicate up failed: {out.stderr[-3000:]}{out.stdout[-2000:]}")

    def add_coder(self, cpus: str, threads: int = 1) -> None:
        """One more coder-agent copy pinned to ``cpus`` (it shares the JOBS consumer)."""
        creds = json.loads((self.root / "state" / "credentials.json").read_text())
        n = len(self.extra) + 2
        env = {**self.env, "SYNDICATE_NATS_URL": self.nats_url, "SYNDICATE_CPUS": cpus, "OMP_NUM_THREADS": str(threads),
               "SYNDICATE_INSTANCE": f"coder-agent-{n}@{socket.gethostname()}", "SYNDICATE_NATS_USER": "coder-agent",
               "SYNDICATE_NATS_PASSWORD": creds["coder-agent"], "PYTHONUNBUFFERED": "1"}
        log = (self.root / f"coder-{n}.log").open("ab")
        self.extra.append(subprocess.Popen([PY, "-m", "services.coder_agent"], env=env, cwd=REPO, stdout=log,
                                           stderr=subprocess.STDOUT))
        end = time.monotonic() + 300
        while time.monotonic() < end:
            status = self.cli("status", "--json", timeout=60)
            if status.returncode == 0 and status.stdout.count('"coder-agent"') >= n:
                return
            time.sleep(2)
        raise RuntimeError("the extra coder-agent copy never answered health")

    def evolve(self, spec: Path, *args: str, timeout: float = 7200.0) -> dict[str, Any]:
        out = self.cli("evolve", str(spec), "--json", "--out", str(self.root / "reports" / str(time.time_ns())),
                       *args, timeout=timeout)
        data = last_json(out.stdout) if "{" in out.stdout else {"status": "error", "stderr": out.stderr[-3000:]}
        data["returncode"] = out.returncode
        return data

    def down(self) -> None:
        for p in self.extra:
            p.terminate()
        for p in self.extra:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.cli("down", timeout=120)


def judge(code: str, spec_path: Path, stage: str = "test", timeout_s: float = 300.0) -> dict[str, Any]:
    """Score ``code`` on ``stage`` with the spec's scorer (same process for every arm):
    the result line's metrics and score, or {"error": ...}."""
    import tempfile

    spec = load_spec(spec_path)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{spec.module}.py").write_text(code)
        (Path(tmp) / "main.py").write_text(spec.scorer)
        proc = subprocess.run([BOX_PYTHON, "main.py"], cwd=tmp, input=json.dumps({"stage": stage, "params": spec.params}),
                              capture_output=True, text=True, timeout=timeout_s, env={"PATH": "/usr/bin:/bin",
                                                                                     "OPENBLAS_NUM_THREADS": "1"})
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    data = last_json(proc.stdout)
    return {"score": data["score"], **data.get("metrics", {})}
