"""The running local stack as the CLI finds it: the supervisor's record
(``<state_dir>/stack.json``: pids, ports, placement) and the NATS credentials it wrote
(``<state_dir>/credentials.json``, mode 0600, removed at stop)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from shared.registry import nats_users
from shared.settings import Settings
from syndicate.deploy import new_password


def stack_file(settings: Settings) -> Path:
    return settings.state_dir / "stack.json"


def read_stack(settings: Settings) -> dict[str, Any] | None:
    """The running stack's record, or None when no supervisor is alive."""
    try:
        data = json.loads(stack_file(settings).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    pid = data.get("supervisor_pid")
    if not pid or not pid_alive(pid):
        return None
    return data


def resolve_nats_url(settings: Settings) -> str:
    """SYNDICATE_NATS_URL when set, else the running local stack's, else the default."""
    if "SYNDICATE_NATS_URL" in os.environ:
        return settings.nats_url
    stack = read_stack(settings)
    return stack["nats_url"] if stack else settings.nats_url


def resolve_connection(settings: Settings, user: str = "cli") -> Settings:
    """``settings`` pointed at the bus: the URL as ``resolve_nats_url``, and, when it is the
    running local stack's and no SYNDICATE_NATS_USER is set, ``user``'s stack credentials."""
    update: dict[str, Any] = {"nats_url": resolve_nats_url(settings)}
    if "SYNDICATE_NATS_URL" not in os.environ and not settings.nats_user:
        password = read_credentials(settings).get(user)
        if password:
            update.update(nats_user=user, nats_password=password)
    return settings.model_copy(update=update)


def credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "credentials.json"


def read_credentials(settings: Settings) -> dict[str, str]:
    """The running stack's NATS passwords by user ({} when it runs without auth)."""
    try:
        return dict(json.loads(credentials_file(settings).read_text()))
    except (OSError, ValueError):
        return {}


def write_credentials(settings: Settings) -> dict[str, str]:
    """Fresh passwords for every NATS user of the stack, readable by this user only."""
    creds = {user: new_password() for user, _ in nats_users()}
    path = credentials_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    return creds


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True
