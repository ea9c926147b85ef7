"""code-sandbox's own knobs (env ``SYNDICATE_SANDBOX_*``) and the limit policy.

Requests carry limits; the service clamps them to hard ceilings the caller cannot
raise (``SandboxSettings.ceilings``). Defaults live in ``shared.contracts.ExecLimits``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from shared.contracts import ExecLimits
from shared.settings import Settings

# The isolation layers, outermost first (tiers.py stacks them; SYNDICATE_SANDBOX_DISABLE
# names the ones to leave out).
LAYERS = ("bwrap", "seccomp", "cgroup", "userdrop")

# Floors keep a run able to start the interpreter at all (Python needs ~10 MB, bwrap and
# the box's init take two pids).
MIN_MEMORY_MB = 32
MIN_OUTPUT_BYTES = 1024


class SandboxSettings(Settings):
    """Settings of one code-sandbox process."""

    sandbox_allow_degraded: bool = False  # run without namespaces/seccomp (every result says so)
    sandbox_concurrency: int = Field(default=2, ge=1, le=64)  # runs at once per process
    sandbox_warm_pool: int = Field(default=0, ge=0, le=32)  # pre-started one-shot boxes
    # Layers to treat as missing, e.g. "bwrap,seccomp": forces a lower tier (tests, debugging).
    sandbox_disable: str = ""
    sandbox_python: Path = Path("/usr/bin/python3")  # world-readable interpreter used in the box
    sandbox_bwrap: str = "bwrap"
    sandbox_uid: int = 65534  # unprivileged uid/gid the box runs as when the service is root
    sandbox_scratch_mb: int = Field(default=64, ge=1, le=4096)  # tmpfs /tmp inside the box
    sandbox_cpu_cores: float = Field(default=1.0, gt=0, le=64)  # CPU bandwidth per box
    sandbox_cgroup_name: str = "syndicate-sandbox"
    # Hard ceilings: a request asking for more gets exactly this much.
    sandbox_max_wall_s: float = Field(default=60.0, gt=0)
    sandbox_max_cpu_s: float = Field(default=30.0, gt=0)
    sandbox_max_memory_mb: int = Field(default=1024, gt=0)
    sandbox_max_processes: int = Field(default=64, gt=0)
    sandbox_max_output_bytes: int = Field(default=8_000_000, gt=0)
    sandbox_max_file_size_mb: int = Field(default=64, gt=0)

    @field_validator("sandbox_disable")
    @classmethod
    def _known_layers(cls, v: str) -> str:
        unknown = {x.strip() for x in v.split(",") if x.strip()} - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; known: {', '.join(LAYERS)}")
        return v

    @property
    def disabled_layers(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.sandbox_disable.split(",") if x.strip())

    @property
    def ceilings(self) -> ExecLimits:
        return ExecLimits(
            wall_s=self.sandbox_max_wall_s, cpu_s=self.sandbox_max_cpu_s,
            memory_mb=self.sandbox_max_memory_mb, processes=self.sandbox_max_processes,
            output_bytes=self.sandbox_max_output_bytes, file_size_mb=self.sandbox_max_file_size_mb,
        )


def clamp_limits(asked: ExecLimits, ceilings: ExecLimits) -> ExecLimits:
    """The limits a run actually gets: each value min(asked, ceiling), above small floors."""
    return ExecLimits(
        wall_s=min(asked.wall_s, ceilings.wall_s),
        cpu_s=min(asked.cpu_s, ceilings.cpu_s),
        memory_mb=max(MIN_MEMORY_MB, min(asked.memory_mb, ceilings.memory_mb)),
        processes=min(asked.processes, ceilings.processes),
        output_bytes=max(MIN_OUTPUT_BYTES, min(asked.output_bytes, ceilings.output_bytes)),
        file_size_mb=min(asked.file_size_mb, ceilings.file_size_mb),
    )
