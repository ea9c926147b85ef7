from __future__ import annotations

import os
import shutil

import pytest

from shared.errors import ConfigError
from shared.topology import discover
from tests.topology.machines import SYSFS, fixture_topology


def test_epyc_7502p_has_eight_ccx_of_four_smt_cores(epyc):
    assert epyc.cpus == tuple(range(64))
    assert len(epyc.cores) == 32
    assert all(core == (c, c + 32) for c, core in enumerate(epyc.cores))
    assert epyc.smt
    assert len(epyc.l3_groups) == 8
    for k, group in enumerate(epyc.l3_groups):
        assert group == (*range(4 * k, 4 * k + 4), *range(4 * k + 32, 4 * k + 36))
        assert len(epyc.group_cores(k)) == 4
    assert epyc.l3_source == "cache"
    assert epyc.l3_size_kb == 16384
    assert epyc.numa_nodes == (tuple(range(64)),)
    assert epyc.notes == ()


def test_dual_socket_has_one_l3_and_one_node_per_socket(dual):
    assert len(dual.cpus) == 80 and len(dual.cores) == 40
    socket0 = (*range(0, 20), *range(40, 60))
    socket1 = (*range(20, 40), *range(60, 80))
    assert dual.l3_groups == (socket0, socket1)
    assert dual.numa_nodes == (socket0, socket1)
    assert dual.packages == (socket0, socket1)
    assert dual.node_of_group(1) == 1
    assert dual.physical_cores([0, 40, 1]) == 2


def test_recorded_vm_is_two_cores_one_l3(vm2):
    assert vm2.cpus == (0, 1)
    assert vm2.cores == ((0,), (1,))
    assert vm2.l3_groups == ((0, 1),)
    assert not vm2.smt


def test_missing_l3_falls_back_to_packages():
    topo = fixture_topology("vm-no-l3")
    assert topo.l3_source == "package"
    assert topo.l3_groups == ((0, 1), (2, 3))
    assert any("package" in n for n in topo.notes)
    assert any("NUMA" in n for n in topo.notes)


def test_missing_l3_and_packages_gives_one_group(tmp_path):
    shutil.copytree(SYSFS / "vm-no-l3", tmp_path, dirs_exist_ok=True)
    for pkg in tmp_path.rglob("physical_package_id"):
        pkg.unlink()
    topo = discover(tmp_path)
    assert topo.l3_source == "machine"
    assert topo.l3_groups == ((0, 1, 2, 3),)


def test_allowed_limits_cpus_and_drops_hidden_siblings():
    topo = discover(SYSFS / "epyc-7502p", allowed=set(range(8)))
    assert topo.cpus == tuple(range(8))
    assert topo.cores == tuple((c,) for c in range(8))
    assert topo.l3_groups == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert any("limited" in n for n in topo.notes)


def test_offline_cpu_is_left_out(tmp_path):
    shutil.copytree(SYSFS / "epyc-7502p", tmp_path, dirs_exist_ok=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-62\n")
    topo = discover(tmp_path)
    assert 63 not in topo.cpus
    assert topo.core_of(31) == (31,)
    assert len(topo.group_cores(7)) == 4


def test_empty_tree_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        discover(tmp_path)


def test_live_machine_matches_own_affinity():
    topo = discover("/")
    assert set(topo.cpus) == os.sched_getaffinity(0)
    assert sorted(c for core in topo.cores for c in core) == list(topo.cpus)
    assert sorted(c for g in topo.l3_groups for c in g) == list(topo.cpus)


def test_cpu_quota_limits_cores(tmp_path):
    shutil.copytree(SYSFS / "epyc-7502p", tmp_path, dirs_exist_ok=True)
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cpu.max").write_text("250000 100000\n")
    topo = discover(tmp_path)
    assert topo.cores == ((0, 32), (1, 33), (2, 34))
    assert topo.l3_groups == ((0, 1, 2, 32, 33, 34),)
    assert any("quota of 2.5" in n for n in topo.notes)
    (tmp_path / "sys/fs/cgroup/cpu.max").write_text("max 100000\n")
    assert len(discover(tmp_path).cores) == 32
