"""Per-run control groups: limits (memory, pids, CPU bandwidth), accounting, kill, removal.

Works on cgroup v1 (``/sys/fs/cgroup/{memory,pids,cpu,cpuacct}``), on v2 where the
unified tree offers the controllers, and on hybrids like this machine (v1 controllers
plus a controller-less v2 tree whose ``cgroup.kill`` and ``cpu.stat`` still work). A run's
groups live at ``<mount>/<name>/i-<service pid>-<random>/<run id>`` in every hierarchy used, so a
restarted service can find and remove what a killed one left (``sweep_stale``).

The child joins its groups itself, before exec (``procs_files``), so nothing it forks
can start outside them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass


class CgroupLayout:
    """Which hierarchies this host offers and which of them we can write."""

    v1: dict[str, Path] = field(default_factory=dict)  # controller -> its v1 mount
    v2: Path | None = None  # the cgroup2 mount
    v2_controllers: frozenset[str] = frozenset()  # controllers usable in v2 below our base

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> CgroupLayout:
        """Read /proc/self/mounts; no writes."""
        layout = cls()
        for line in _read(Path("/proc/self/mounts")).splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            mnt, fstype, opts = Path(parts[1]), parts[2], set(parts[3].split(","))
            if fstype == "cgroup2" and layout.v2 is None:
                layout.v2 = mnt
            elif fstype == "cgroup":
                for c in V1_CONTROLLERS:
                    if c in opts and c not in layout.v1:
                        layout.v1[c] = mnt
        if layout.v2 is not None:
            avail = set(_read(layout.v2 / "cgroup.controllers").split())
            layout.v2_controllers = frozenset(avail & {"memory", "pids", "cpu"})
        return layout

    @property
    def controllers(self) -> frozenset[str]:
        """Limits we can enforce: union of v1 and v2 controllers."""
        return frozenset(set(self.v1) & {"memory", "pids", "cpu"}) | self.v2_controllers


class CgroupTree:
    """The service's own subtree in every hierarchy it uses; makes per-run groups."""

    def __init__(self, layout: CgroupLayout, name: str = "syndicate-sandbox", instance: str | None = None):
        self.layout = layout
        self.name = name
        # unique per tree; the pid in the name lets a later service sweep a dead one's groups
        self.instance = instance or f"i-{os.getpid()}-{os.urandom(3).hex()}"
        self.roots: list[Path] = []  # <mount>/<name>/<instance> per hierarchy

    def _mounts(self) -> list[Path]:
        mounts = [self.layout.v1[c] for c in V1_CONTROLLERS if c in self.layout.v1]
        if self.layout.v2 is not None:
            mounts.append(self.layout.v2)
        return list(dict.fromkeys(mounts))

    def setup(self) -> None:
        """Create the instance directories (raises OSError when we may not)."""
        for mnt in self._mounts():
            base = mnt / self.name
            if mnt == self.layout.v2 and self.layout.v2_controllers:
                enable = " ".join(f"+{c}" for c in sorted(self.layout.v2_controllers))
                _write(mnt / "cgroup.subtree_control", enable)
                base.mkdir(exist_ok=True)
                _write(base / "cgroup.subtree_control", enable)
                (base / self.instance).mkdir(exist_ok=True)
                _write(base / self.instance / "cgroup.subtree_control", enable)
            else:
                (base / self.instance).mkdir(parents=True, exist_ok=True)
            self.roots.append(base / self.instance)

    def sweep_stale(self) -> int:
        """Kill and remove groups of service instances that are no longer alive."""
        removed = 0
        for mnt in self._mounts():
            base = mnt / self.name
            if not base.is_dir():
                continue
            for inst in base.iterdir():
                if not inst.is_dir() or not inst.name.startswith("i-") or inst.name == self.instance:
                    continue
                pid = inst.name.split("-")[1] if inst.name.count("-") >= 1 else ""
                if pid.isdigit() and Path(f"/proc/{pid}").exists():
                    continue
                removed += remove_tree(inst)
        return removed

    def new_run(self, run_id: str) -> RunCgroup:
        """Create the groups of one run (empty; the child joins them itself)."""
        dirs = []
        try:
            for root in self.roots:
                d = root / run_id
                d.mkdir()
                dirs.append(d)
        except OSError:
            for d in dirs:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return RunCgroup(self.layout, dirs)

    def teardown(self) -> None:
        """Remove the instance directories (after every run finished)."""
        for root in self.roots:
            remove_tree(root)
        for mnt in self._mounts():
            with contextlib.suppress(OSError):
                (mnt / self.name).rmdir()  # only when no other instance uses it


class RunCgroup:
    """One run's groups across hierarchies."""

    def __init__(self, layout: CgroupLayout, dirs: list[Path]):
        self.layout = layout
        self.dirs = dirs

    def _find(self, filename: str) -> Path | None:
        for d in self.dirs:
            p = d / filename
            if p.exists():
                return p
        return None

    @property
    def procs_files(self) -> list[str]:
        """Files the child writes "0" to, to join every group before exec."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def set_limits(self, memory_mb: int, processes: int, cpu_cores: float) -> None:
        """Apply limits; may be called again to change them (warm boxes)."""
        mem = memory_mb * 1024 * 1024
        if p := self._find("memory.limit_in_bytes"):  # v1
            sw = self._find("memory.memsw.limit_in_bytes")
            # memsw must stay >= memory: order the writes by direction of change.
            if sw is not None and int(_read(p) or 0) > mem:
                _write(p, str(mem))
                _write(sw, str(mem))
            else:
                if sw is not None:
                    _write(sw, str(mem))
                _write(p, str(mem))
        elif p := self._find("memory.max"):  # v2
            _write(p, str(mem))
            if sw := self._find("memory.swap.max"):
                _write(sw, "0")
        if p := self._find("pids.max"):
            _write(p, str(processes))
        period = 100_000
        quota = int(cpu_cores * period)
        if p := self._find("cpu.cfs_quota_us"):  # v1
            _write(p, str(quota))
        elif p := self._find("cpu.max"):  # v2
            _write(p, f"{quota} {period}")

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            out.update(int(x) for x in _read(d / "cgroup.procs").split())
        return sorted(out)

    def stats(self) -> dict[str, float]:
        """cpu_s, memory_peak_mb, oom_kills, pids_max_hits (whatever this host can tell)."""
        out: dict[str, float] = {}
        if self.layout.v2 is not None and (p := self._find("cpu.stat")) and "usage_usec" in (s := _keyed(_read(p))):
            out["cpu_s"] = s["usage_usec"] / 1e6
        elif p := self._find("cpuacct.usage"):
            out["cpu_s"] = int(_read(p) or 0) / 1e9
        if (p := self._find("memory.max_usage_in_bytes")) or (p := self._find("memory.peak")):
            out["memory_peak_mb"] = int(_read(p) or 0) / 2**20
        if (p := self._find("memory.oom_control")) or (p := self._find("memory.events")):
            out["oom_kills"] = _keyed(_read(p)).get("oom_kill", 0)
        if p := self._find("pids.events"):
            out["pids_max_hits"] = _keyed(_read(p)).get("max", 0)
        return out

    def kill(self) -> None:
        """SIGKILL everything in the groups (atomic via cgroup.kill where available)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                if (d / "cgroup.kill").exists():
                    _write(d / "cgroup.kill", "1")
        for pid in self.pids():  # v1-only hosts: a few rounds catch processes forked meanwhile
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Kill what is left and remove the groups; False if one stayed (logged by caller)."""
        return all(remove_tree(d, timeout_s) for d in self.dirs)


def remove_tree(path: Path, timeout_s: float = 2.0) -> int:
    """Kill every process below ``path`` and rmdir it bottom-up; returns groups removed."""
    removed = 0
    deadline = time.monotonic() + timeout_s
    for d in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [path]:
        while True:
            with contextlib.suppress(OSError):
                if (d / "cgroup.kill").exists():
                    _write(d / "cgroup.kill", "1")
            for pid in _read(d / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                d.rmdir()
                removed += 1
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    return removed
                time.sleep(0.005)
    return removed
