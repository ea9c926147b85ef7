"""Fixtures for code-sandbox tests: the host's isolation (detected once), a BoxPool per
test, and checks that a run left no process, cgroup or file behind."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.code_sandbox.pool import BoxPool
from services.code_sandbox.reaper import become_subreaper
from services.code_sandbox.settings import SandboxSettings
from services.code_sandbox.tiers import FULL, HostIsolation, detect
from tests.conftest import WAIT_S

# Short limits keep the suite fast; the tests that need more ask for it.
TEST_SETTINGS = dict(
    sandbox_max_wall_s=10.0, sandbox_max_cpu_s=5.0, sandbox_max_memory_mb=96, sandbox_max_processes=16,
    sandbox_max_output_bytes=2_000_000, sandbox_max_file_size_mb=32, sandbox_scratch_mb=16,
)


def make_settings(**over: object) -> SandboxSettings:
    return SandboxSettings(**{**TEST_SETTINGS, **over})


@pytest.fixture(scope="session")
def host() -> Iterator[HostIsolation]:
    """Full isolation, as on every machine this project targets (root, bwrap installed)."""
    if os.geteuid() != 0:
        pytest.skip("code-sandbox's full tier needs root (cgroups, uid drop)")
    # Boxes' inits are re-parented to the test process when bwrap exits: reap them here.
    become_subreaper()
    h = detect(make_settings())
    assert h.tier == FULL, f"expected full isolation on this host, got {h.tier}: {h.missing}"
    yield h
    if h.cgroups is not None:
        h.cgroups.teardown()


@pytest.fixture
async def pool(host: HostIsolation) -> AsyncIterator[BoxPool]:
    p = BoxPool(make_settings(), host=host, subreaper=True)
    await p.start()
    yield p
    await p.close()


def descendants(root: int | None = None) -> list[int]:
    """Live (non-zombie) descendants of this process, except those in ``exclude``."""
    root = root or os.getpid()
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parent[int(d.name)] = int(fields[1])
    out = []
    for pid in parent:
        p = pid
        seen = 0
        while p in parent and seen < 64:
            p = parent[p]
            seen += 1
            if p == root:
                out.append(pid)
                break
    return out


def assert_clean(host: HostIsolation, *, timeout_s: float = WAIT_S, allow: frozenset[int] = frozenset()) -> None:
    """No box process, run cgroup or scratch directory is left (waits for teardown; the
    scratch directories of this process's boxes only: other runs on the machine have theirs)."""
    end = time.monotonic() + timeout_s
    while True:
        procs = [p for p in descendants() if p not in allow]
        groups = [d for root in (host.cgroups.roots if host.cgroups else []) for d in root.iterdir() if d.is_dir()]
        scratch = list(Path(tempfile.gettempdir()).glob(f"syndicate-box-{os.getpid()}-*"))
        if not procs and not groups and not scratch:
            return
        if time.monotonic() > end:
            raise AssertionError(f"left behind: processes {procs}, cgroups {groups}, files {scratch}")
        time.sleep(0.02)
