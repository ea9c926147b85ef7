"""CPU topology discovered from a sysfs tree: online cpus, physical cores (SMT siblings),
L3 groups (the CCX/CCD unit an agent should stay inside), NUMA nodes and packages.

Only these files are read, relative to ``root`` (``/`` on a live machine, a recorded tree
in tests)::

    sys/devices/system/cpu/online
    sys/devices/system/cpu/cpuN/topology/{thread_siblings_list,physical_package_id}
    sys/devices/system/cpu/cpuN/cache/indexK/{level,type,shared_cpu_list,size}
    sys/devices/system/node/nodeM/cpulist
    sys/fs/cgroup/cpu.max          (a CPU quota: use only as many cores as it pays for)

Missing pieces degrade instead of failing: no L3 entry (some VMs hide it) groups cpus by
package, no node directory means one NUMA node, no topology directory means every cpu is
its own core. Each fallback is written to ``Topology.notes``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError
from shared.settings import parse_cpus

CPU_DIR = Path("sys/devices/system/cpu")
NODE_DIR = Path("sys/devices/system/node")
CGROUP_CPU_MAX = Path("sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Topology:
    """What the placement planner needs to know about a machine. All cpu ids are logical
    cpus as Linux numbers them; every tuple is sorted."""

    cpus: tuple[int, ...]
    # One tuple per physical core: its SMT siblings (hyperthreads) that are usable.
    cores: tuple[tuple[int, ...], ...]
    # Logical cpus sharing one L3 cache (a CCX on Zen 2, a CCD on Zen 3+, a socket on Xeon).
    l3_groups: tuple[tuple[int, ...], ...]
    numa_nodes: tuple[tuple[int, ...], ...]
    packages: tuple[tuple[int, ...], ...]
    l3_source: str = "cache"  # "cache" | "package" | "machine": where l3_groups came from
    l3_size_kb: int | None = None  # size of one L3 instance, when sysfs says
    source: str = "/"
    notes: tuple[str, ...] = field(default=())

    @property
    def smt(self) -> bool:
        """True when at least one core exposes more than one hardware thread."""
        return any(len(c) > 1 for c in self.cores)

    def core_of(self, cpu: int) -> tuple[int, ...]:
        """The SMT sibling set containing ``cpu``."""
        for core in self.cores:
            if cpu in core:
                return core
        raise KeyError(cpu)

    def physical_cores(self, cpus: list[int] | tuple[int, ...]) -> int:
        """How many distinct physical cores ``cpus`` touch (SMT siblings count once)."""
        wanted = set(cpus)
        return sum(1 for core in self.cores if wanted.intersection(core))

    def group_cores(self, group: int) -> list[tuple[int, ...]]:
        """The physical cores (sibling tuples) of L3 group ``group``, in cpu order."""
        members = set(self.l3_groups[group])
        return [c for c in self.cores if c[0] in members]

    def node_of_group(self, group: int) -> int:
        """Index of the NUMA node holding most of L3 group ``group``."""
        members = set(self.l3_groups[group])
        overlap = [len(members.intersection(n)) for n in self.numa_nodes]
        return max(range(len(overlap)), key=lambda i: (overlap[i], -i))

    def nodes_of(self, cpus: list[int] | tuple[int, ...]) -> list[int]:
        """Indices of the NUMA nodes that ``cpus`` touch."""
        wanted = set(cpus)
        return [i for i, node in enumerate(self.numa_nodes) if wanted.intersection(node)]

    def groups_of(self, cpus: list[int] | tuple[int, ...]) -> list[int]:
        """Indices of the L3 groups that ``cpus`` touch."""
        wanted = set(cpus)
        return [i for i, g in enumerate(self.l3_groups) if wanted.intersection(g)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def _groups(sets: dict[int, frozenset[int]], cpus: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Distinct cpu sets, limited to usable cpus, ordered by their lowest cpu."""
    usable = set(cpus)
    seen: set[tuple[int, ...]] = set()
    for cpu in cpus:
        members = tuple(sorted(sets.get(cpu, frozenset({cpu})) & usable)) or (cpu,)
        seen.add(members)
    return tuple(sorted(seen))


def _cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 ``cpu.max``), None if unlimited."""
    text = _read(root / CGROUP_CPU_MAX)
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not quota.isdigit() or not period.strip().isdigit():
        return None
    return int(quota) / int(period)


def _l3_of(cpu_dir: Path) -> tuple[frozenset[int], int | None] | None:
    """(shared cpus, size in KB) of the level-3 cache above this cpu, or None."""
    cache = cpu_dir / "cache"
    if not cache.is_dir():
        return None
    for index in sorted(cache.glob("index*"), key=lambda p: int(p.name[5:] or 0)):
        if _read(index / "level") != "3" or _read(index / "type") == "Instruction":
            continue
        shared = _read(index / "shared_cpu_list")
        if not shared:
            continue
        size = _read(index / "size")
        size_kb = int(re.sub(r"\D", "", size)) if size and re.search(r"\d", size) else None
        return frozenset(parse_cpus(shared)), size_kb
    return None


def discover(root: str | Path = "/", allowed: set[int] | None = None) -> Topology:
    """Read the topology under sysfs ``root``.

    ``allowed`` limits it to the cpus this process may run on (a container's cpuset or a
    taskset). When ``root`` is the live ``/`` and ``allowed`` is None, the process's own
    affinity is used, so a plan made inside a cpuset never hands out cpus it cannot use.
    Raises ConfigError when no cpu is found.
    """
    root = Path(root)
    notes: list[str] = []
    cpu_base = root / CPU_DIR
    online_text = _read(cpu_base / "online")
    if online_text:
        online = parse_cpus(online_text)
    else:
        online = sorted(int(p.name[3:]) for p in cpu_base.glob("cpu[0-9]*") if p.name[3:].isdigit())
    if allowed is None and root.resolve() == Path("/"):
        allowed = set(os.sched_getaffinity(0))
    if allowed is not None:
        limited = [c for c in online if c in allowed]
        if len(limited) < len(online):
            notes.append(
                f"limited to the {len(limited)} of {len(online)} online cpus this process may use"
            )
        online = limited
    if not online:
        raise ConfigError(f"no usable cpus found under {cpu_base}")
    cpus = tuple(online)

    siblings: dict[int, frozenset[int]] = {}
    package_id: dict[int, int] = {}
    l3: dict[int, frozenset[int]] = {}
    l3_size: int | None = None
    for cpu in cpus:
        d = cpu_base / f"cpu{cpu}"
        sib = _read(d / "topology" / "thread_siblings_list")
        if sib:
            siblings[cpu] = frozenset(parse_cpus(sib))
        pkg = _read(d / "topology" / "physical_package_id")
        if pkg is not None and pkg.lstrip("-").isdigit():
            package_id[cpu] = int(pkg)
        found = _l3_of(d)
        if found:
            l3[cpu], size = found
            l3_size = l3_size or size

    if len(siblings) < len(cpus):
        notes.append("no SMT sibling lists: every cpu is counted as its own core")
    cores = _groups(siblings, cpus)
    quota = _cpu_quota(root)
    if quota is not None and math.ceil(quota) < len(cores):
        # A CPU quota without a cpuset (docker --cpus, a Burstable pod): more threads than
        # the quota would be throttled mid-token. Use as many whole cores as it pays for.
        keep = max(1, math.ceil(quota))
        cores = cores[:keep]
        cpus = tuple(sorted(c for core in cores for c in core))
        notes.append(f"cgroup cpu quota of {quota:g} cpus: using the first {keep} cores only")

    by_package: dict[int, set[int]] = {}
    for cpu in cpus:
        by_package.setdefault(package_id.get(cpu, 0), set()).add(cpu)
    packages = tuple(sorted(tuple(sorted(s)) for s in by_package.values()))

    if len(l3) == len(cpus):
        l3_groups, l3_source = _groups(l3, cpus), "cache"
    elif len(package_id) == len(cpus):
        l3_groups, l3_source = packages, "package"
        notes.append("no L3 cache entries in sysfs: cpus grouped by package instead")
    else:
        l3_groups, l3_source = (cpus,), "machine"
        notes.append("no L3 cache or package entries in sysfs: all cpus form one group")
    # A core must never straddle two groups; keep siblings together if sysfs is odd.
    l3_groups = _merge_split_cores(l3_groups, cores)

    nodes: dict[int, frozenset[int]] = {}
    for node_dir in sorted((root / NODE_DIR).glob("node[0-9]*")):
        members = frozenset(parse_cpus(_read(node_dir / "cpulist") or ""))
        for cpu in members:
            nodes[cpu] = members
    if nodes:
        # A cpu listed in no node (odd tree) stands alone rather than joining another.
        numa = _groups(nodes, cpus)
    else:
        numa = (cpus,)
        notes.append("no NUMA node entries in sysfs: one node assumed")

    return Topology(
        cpus=cpus,
        cores=cores,
        l3_groups=l3_groups,
        numa_nodes=numa,
        packages=packages,
        l3_source=l3_source,
        l3_size_kb=l3_size if l3_source == "cache" else None,
        source=str(root),
        notes=tuple(notes),
    )


def _merge_split_cores(
    groups: tuple[tuple[int, ...], ...], cores: tuple[tuple[int, ...], ...]
) -> tuple[tuple[int, ...], ...]:
    """Merge groups that share a physical core (inconsistent sysfs), so that placement,
    which hands out whole cores, can always name one group per core."""
    merged = [set(g) for g in groups]
    changed = True
    while changed:
        changed = False
        for core in cores:
            hit = [i for i, g in enumerate(merged) if g.intersection(core)]
            if len(hit) > 1:
                first = merged[hit[0]]
                for i in reversed(hit[1:]):
                    first |= merged.pop(i)
                changed = True
                break
    return tuple(sorted(tuple(sorted(g)) for g in merged))
