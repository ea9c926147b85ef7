from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import Settings


class GatewaySettings(Settings):
    """Gateway knobs; env names are ``SYNDICATE_GATEWAY_<NAME>`` (the shared prefix plus the
    ``gateway_`` field prefix), while NATS URL, state dir etc. stay the shared ``SYNDICATE_*``."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65_535)
    # Unset: no auth. Set: every /v1 request needs ``Authorization: Bearer <key>``.
    gateway_api_key: str | None = None
    # Tasks this gateway runs at once; one more is refused with 429 + Retry-After
    # (bounded, like llama-swap's concurrencyLimit, instead of Ollama's unenforced queue).
    gateway_max_inflight: int = Field(default=16, ge=1)
    gateway_retry_after_s: int = Field(default=2, ge=1)
    # The task deadline (TaskSubmit.timeout_s) of every request; past it: 504.
    gateway_request_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    # Extra wait past the deadline for the router's timeout result before giving up.
    gateway_grace_s: float = Field(default=5.0, ge=0)
    # With no live event for this long, read the task's state from the KV (events are
    # best-effort core NATS; the KV is the truth).
    gateway_poll_s: float = Field(default=2.0, gt=0)
    gateway_embed_timeout_s: float = Field(default=30.0, gt=0)
    # Health/metrics pings at scrape time wait this long for replies; results are cached
    # for gateway_scrape_cache_s so several scrapers do not flood the bus.
    gateway_scrape_wait_s: float = Field(default=0.3, gt=0)
    gateway_scrape_cache_s: float = Field(default=1.0, ge=0)
    # Folders MCP's ``ingest`` may read (comma- or os.pathsep-separated). Empty: ingest is
    # refused, so a remote caller can never make the gateway read host files.
    gateway_ingest_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # The base URL agent cards advertise (behind a proxy); unset: the URL the card was asked at.
    gateway_public_url: str | None = None
    # The web console at /ui (docs/console.md): "read" shows the stack, "write" also lets
    # the page submit and cancel tasks, "off" serves nothing. With an API key set, the
    # console asks for it either way.
    gateway_console: Literal["off", "read", "write"] = "read"
    # Where the console links a trace when spans go to OTLP (Jaeger's UI, e.g.
    # http://localhost:16686); unset: no link.
    gateway_jaeger_url: str | None = None
    # Folders the console looks in for `syndicate eval study` reports (report.json), besides
    # the last study this state dir recorded; empty: <state_dir>/study, ./study, ./docs/study.
    gateway_study_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("gateway_ingest_roots", "gateway_study_dirs", mode="before")
    @classmethod
    def _split_roots(cls, v: Any) -> Any:
        if isinstance(v, str):
            parts = v.replace(os.pathsep, ",").split(",")
            return [Path(p.strip()).expanduser().resolve() for p in parts if p.strip()]
        return v

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"
