"""Knobs of the router's evolution runs (env ``SYNDICATE_EVOLVE_*``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class EvolutionSettings(Settings):
    # A run's owner renews its lease every heartbeat; a router takes over a run whose owner
    # has been silent for lease_s (it looks every scan_s, and at start-up).
    evolve_lease_s: float = Field(default=20.0, gt=0)
    evolve_heartbeat_s: float = Field(default=5.0, gt=0)
    evolve_scan_s: float = Field(default=10.0, gt=0)
    # How long after a generation's deadline missing candidates are still awaited.
    evolve_grace_s: float = Field(default=15.0, ge=0)
