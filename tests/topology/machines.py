"""Recorded sysfs trees (tests/fixtures/sysfs, written by make_fixtures.py) and a
builder for in-memory topologies, shared by the topology tests."""

from __future__ import annotations

from pathlib import Path

from shared.topology import Topology, discover

SYSFS = Path(__file__).resolve().parents[1] / "fixtures" / "sysfs"


def fixture_topology(name: str) -> Topology:
    """Discover the recorded tree ``name``."""
    return discover(SYSFS / name)


def make_topology(
    group_sizes: list[int],
    *,
    smt: int = 1,
    nodes_per_group: bool = False,
    adjacent_siblings: bool = False,
) -> Topology:
    """One L3 group per entry of ``group_sizes`` (physical cores), one NUMA node or one per
    group. Numbering as Linux does on servers: first threads 0..N-1 in group order, sibling
    k of core c at c + k*N; or siblings adjacent (c*smt + k), as on some desktops."""
    total = sum(group_sizes)
    cores = tuple(
        tuple(c * smt + k if adjacent_siblings else c + k * total for k in range(smt))
        for c in range(total)
    )
    groups, start = [], 0
    for size in group_sizes:
        groups.append(tuple(sorted(cpu for core in cores[start : start + size] for cpu in core)))
        start += size
    cpus = tuple(sorted(cpu for core in cores for cpu in core))
    return Topology(
        cpus=cpus,
        cores=cores,
        l3_groups=tuple(groups),
        numa_nodes=tuple(groups) if nodes_per_group else (cpus,),
        packages=(cpus,),
        source="memory",
    )
