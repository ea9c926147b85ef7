"""Process settings, read from the environment (prefix ``SYNDICATE_``).

One ``Settings`` for what every process shares; each service subclasses it for its own
knobs (``CoderSettings`` etc. live with the service).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNDICATE_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
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
    def traces_dir(self) -> Path:
        return self.state_dir / "traces"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"


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
