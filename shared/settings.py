"""Process settings, read from the environment (prefix ``SYNDICATE_``).

One ``Settings`` for what every process shares; each service subclasses it for its own
knobs (``CoderSettings`` etc. live with the service).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNDICATE_", extra="ignore")

    # One URL, or a comma-separated list of a cluster's nodes (the client fails over).
    nats_url: str = "nats://127.0.0.1:4222"
    # NATS user of this process (the local stack generates one per service; compose and
    # k8s put them in the URL). The password never appears in logs or error messages.
    nats_user: str | None = None
    nats_password: str | None = None
    # JetStream: replicas of every stream and the task bucket (3 on a 3-node cluster;
    # unset: derived from the server), retention of task state and job/result messages,
    # bound of the submitted-task queue (publish fails when full), and a cap on every
    # consumer's ack_wait (a dead worker's message is redelivered after at most this).
    stream_replicas: int | None = None
    task_retention_s: float = 7 * 86_400.0
    task_queue_max: int = 100_000
    ack_wait_s: float | None = None
    # Where the local stack keeps NATS data, logs, traces and the embedded Qdrant.
    state_dir: Path = Field(default_factory=lambda: Path.cwd() / ".syndicate")
    log_level: str = "INFO"
    log_json: bool = True
    # OTLP/HTTP endpoint (Jaeger, a collector). Unset: spans go to the local trace store.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SYNDICATE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    roster: Path = REPO_ROOT / "infra" / "models.toml"
    # Cores this process may use, assigned by the placement plan (e.g. "0-3" or "0,2").
    cpus: str | None = None
    instance: str | None = None
    connect_timeout_s: float = 5.0

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs to try, with this process's credentials (never log these)."""
        return nats_servers(self.nats_url, self.nats_user, self.nats_password)

    @property
    def traces_dir(self) -> Path:
        return self.state_dir / "traces"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"


def nats_servers(url: str, user: str | None = None, password: str | None = None) -> list[str]:
    """'nats://a:4222,nats://b:4222' -> a list; credentials go into URLs that lack them."""
    out = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:
            part = f"nats://{part}"
        if user and "@" not in part:
            scheme, rest = part.split("://", 1)
            # nats-py reads credentials from the URL as they are (no %-decoding): the
            # generated ones are letters and digits (syndicate.deploy.new_password).
            cred = user + (f":{password}" if password else "")
            part = f"{scheme}://{cred}@{rest}"
        out.append(part)
    return out


def url_credentials(urls: list[str]) -> dict[str, str]:
    """``{"user": ..., "password": ...}`` from the first URL that carries them, else {}.

    Pass them to nats-py as connect options too: a cluster's nodes announce each other's
    URLs without credentials, and a client reconnecting to such a discovered URL would
    otherwise be refused ('Authorization Violation')."""
    for url in urls:
        parsed = urlparse(url)
        if parsed.username:
            return {"user": parsed.username, "password": parsed.password or ""}
    return {}


def without_credentials(urls: list[str]) -> list[str]:
    """The URLs with any ``user:password@`` removed (safe to print; options carry the auth)."""
    return [u.split("://", 1)[0] + "://" + u.split("://", 1)[1].rsplit("@", 1)[-1] if "@" in u else u for u in urls]


def parse_cpus(spec: str | None) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; None/'' -> []."""
    out: list[int] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return sorted(set(out))


def format_cpus(cpus: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8' (the kernel's list format)."""
    cpus = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)
