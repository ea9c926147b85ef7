"""Tier detection and refusal, by forcing lower tiers (SYNDICATE_SANDBOX_DISABLE)."""

from __future__ import annotations

import os

import pytest

from services.code_sandbox.pool import BoxPool
from services.code_sandbox.tiers import DEGRADED, FULL, NAMESPACES, detect
from shared.contracts import ExecLimits, ExecRequest
from shared.errors import IsolationUnavailable
from tests.sandbox.conftest import assert_clean, make_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tier probes need root")
LIM = ExecLimits(wall_s=5, cpu_s=2, memory_mb=64)


async def started(**over: object) -> BoxPool:
    pool = BoxPool(make_settings(**over), subreaper=True)
    await pool.start()
    return pool


def test_full_tier_detected_with_every_layer() -> None:
    h = detect(make_settings())
    try:
        assert h.tier == FULL and h.layers == {"bwrap", "seccomp", "cgroup", "userdrop"} and h.missing == {}
    finally:
        assert h.cgroups is not None
        h.cgroups.teardown()


async def test_without_bwrap_code_is_refused_with_a_clear_message(host) -> None:
    pool = await started(sandbox_disable="bwrap")
    try:
        assert pool.tier == DEGRADED and not pool.allowed
        r = await pool.run(ExecRequest(code="print(1)", limits=LIM))
        assert (r.status, r.isolation, r.stdout) == ("rejected", DEGRADED, "")
        assert "no isolation available" in r.message and "SYNDICATE_SANDBOX_ALLOW_DEGRADED" in r.message
        assert "bwrap: disabled" in r.message
        with pytest.raises(IsolationUnavailable):
            pool.ensure_allowed()
        assert pool.describe()["allowed"] is False
    finally:
        await pool.close()
    assert_clean(host)


async def test_without_seccomp_is_degraded_too(host) -> None:
    pool = await started(sandbox_disable="seccomp")
    try:
        assert pool.tier == DEGRADED
        r = await pool.run(ExecRequest(code="print(1)", limits=LIM))
        assert r.status == "rejected"
    finally:
        await pool.close()


async def test_degraded_runs_only_when_allowed_and_says_so(host) -> None:
    pool = await started(sandbox_disable="bwrap,seccomp", sandbox_allow_degraded=True)
    try:
        assert pool.allowed
        r = await pool.run(ExecRequest(code="import os\nprint(os.getuid())", limits=LIM))
        assert (r.status, r.isolation, r.stdout) == ("ok", DEGRADED, "65534\n")  # still a dropped uid
        r = await pool.run(ExecRequest(code="while True: pass", limits=ExecLimits(wall_s=3, cpu_s=1)))
        assert (r.status, r.isolation) == ("timeout", DEGRADED)  # limits still apply
        r = await pool.run(ExecRequest(code="x = []\nwhile True: x.append(bytearray(2**20))", limits=LIM))
        assert r.status == "memory_limit"
    finally:
        await pool.close()
    assert_clean(host)


async def test_without_cgroups_namespaces_tier_still_runs_with_rlimits(host) -> None:
    pool = await started(sandbox_disable="cgroup")
    try:
        assert pool.tier == NAMESPACES and pool.allowed
        r = await pool.run(ExecRequest(code="print('hi')", limits=LIM))
        assert (r.status, r.isolation, r.stdout) == ("ok", NAMESPACES, "hi\n")
        r = await pool.run(ExecRequest(code="x = bytearray(200 * 2**20)", limits=LIM))
        assert r.status == "memory_limit"  # RLIMIT_AS alone
        r = await pool.run(ExecRequest(code="import time; time.sleep(100)", limits=ExecLimits(wall_s=0.5)))
        assert r.status == "timeout"
    finally:
        await pool.close()
    assert_clean(host)
