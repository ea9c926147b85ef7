"""Which isolation layers this host allows, and the tier they add up to.

| tier | layers | runs code? |
|---|---|---|
| ``full`` | bwrap (user/pid/net/ipc/uts/mount ns) + seccomp + cgroup (memory, pids) + uid drop | yes |
| ``namespaces`` | bwrap + seccomp + uid drop, no usable cgroup: rlimits bound memory/processes | yes |
| ``degraded`` | anything less (no bwrap, or no seccomp: AF_VSOCK would reach the host) | only with ``SYNDICATE_SANDBOX_ALLOW_DEGRADED=1``, and every result says ``degraded`` |

Every layer is probed for real at start-up (a box runs ``print('ok')``), never assumed
from the presence of a binary. ``SYNDICATE_SANDBOX_DISABLE=bwrap,...`` makes a layer
count as missing, which is how tests force a lower tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from services.code_sandbox.cgroups import CgroupLayout, CgroupTree
from services.code_sandbox.settings import SandboxSettings
from services.code_sandbox.syscall_filter import build_filter_bpf

FULL, NAMESPACES, DEGRADED = "full", "namespaces", "degraded"


@dataclass
class HostIsolation:
    """The detection result: tier, working layers, and why the others are missing."""

    tier: str
    layers: frozenset[str]
    missing: dict[str, str] = field(default_factory=dict)  # layer -> reason
    bwrap_path: str | None = None
    seccomp_bpf: bytes | None = None
    cgroups: CgroupTree | None = None
    setpriv_path: str | None = None

    def runs_code(self, allow_degraded: bool) -> bool:
        return self.tier in (FULL, NAMESPACES) or allow_degraded

    def describe(self) -> dict:
        """For health replies and ``syndicate status``."""
        return {"tier": self.tier, "layers": sorted(self.layers), "missing": dict(self.missing)}


def tier_of(layers: frozenset[str] | set[str]) -> str:
    if {"bwrap", "seccomp", "userdrop"} <= layers:
        return FULL if "cgroup" in layers else NAMESPACES
    return DEGRADED


def detect(settings: SandboxSettings) -> HostIsolation:
    """Probe every layer (creates the service's cgroup subtree; ~50 ms)."""
    disabled = settings.disabled_layers
    layers: set[str] = set()
    missing: dict[str, str] = {f"{x}": "disabled by SYNDICATE_SANDBOX_DISABLE" for x in disabled}

    if not os.access(settings.sandbox_python, os.X_OK):
        missing["python"] = f"{settings.sandbox_python} not executable"

    setpriv_path = shutil.which("setpriv")
    if "userdrop" not in disabled:
        # Root must drop to the unprivileged uid (bwrap as root with a user namespace
        # would make the box host root); a non-root service is already unprivileged.
        if setpriv_path is None:
            missing["userdrop"] = "setpriv (util-linux) not found"
        else:
            layers.add("userdrop")

    bpf = None
    if "seccomp" not in disabled:
        try:
            bpf = build_filter_bpf()
            layers.add("seccomp")
        except Exception as exc:
            missing["seccomp"] = f"{type(exc).__name__}: {exc}"

    cgroups = None
    if "cgroup" not in disabled:
        layout = CgroupLayout.detect()
        need = {"memory", "pids"}
        if not need <= layout.controllers:
            missing["cgroup"] = f"controllers {sorted(need - layout.controllers)} unavailable"
        else:
            tree = CgroupTree(layout, settings.sandbox_cgroup_name)
            try:
                tree.sweep_stale()
                tree.setup()
                cgroups = tree
                layers.add("cgroup")
            except OSError as exc:
                tree.teardown()
                missing["cgroup"] = f"cannot create cgroups: {exc}"

    bwrap_path = None
    if "bwrap" not in disabled:
        bwrap_path = shutil.which(settings.sandbox_bwrap)
        if bwrap_path is None:
            missing["bwrap"] = f"{settings.sandbox_bwrap} not found (infra/scripts/install-system-deps.sh installs it)"
        elif setpriv_path is None:
            missing["bwrap"] = "cannot start bwrap without setpriv (util-linux)"
            bwrap_path = None
        elif (why := _probe_bwrap(settings, bwrap_path, setpriv_path, bpf if "seccomp" in layers else None)) is not None:
            missing["bwrap"] = why
            bwrap_path = None
        else:
            layers.add("bwrap")

    frozen = frozenset(layers)
    return HostIsolation(
        tier=tier_of(frozen) if "python" not in missing else DEGRADED, layers=frozen, missing=missing,
        bwrap_path=bwrap_path, seccomp_bpf=bpf if "seccomp" in layers else None, cgroups=cgroups,
        setpriv_path=setpriv_path,
    )


def _probe_bwrap(settings: SandboxSettings, bwrap_path: str, setpriv_path: str, bpf: bytes | None) -> str | None:
    """Run one real box synchronously; None when it printed 'ok'."""
    from services.code_sandbox.box import BoxConfig, bwrap_argv, encode_request, launcher_argv
    from services.code_sandbox.reaper import ChildReaper

    cfg = BoxConfig(settings=settings, tier="probe", use_bwrap=True, bwrap_path=bwrap_path,
                    seccomp_bpf=bpf, cgroups=None, reaper=ChildReaper(), setpriv_path=setpriv_path)
    fds: list[int] = []
    try:
        seccomp_fd = None
        if bpf is not None:
            seccomp_fd, w = os.pipe()
            os.write(w, bpf)
            os.close(w)
            fds.append(seccomp_fd)
        argv = launcher_argv(cfg, [], bwrap_argv(cfg, seccomp_fd=seccomp_fd, status_fd=2))
        proc = subprocess.run(
            argv, input=encode_request("", "print('ok')", []), capture_output=True, env={},
            pass_fds=fds, timeout=20,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap probe failed: {type(exc).__name__}: {exc}"
    finally:
        for fd in fds:
            os.close(fd)
    if proc.returncode != 0 or proc.stdout.strip() != b"ok":
        err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        return f"bwrap probe failed (exit {proc.returncode}): {err}"
    return None
