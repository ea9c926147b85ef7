from __future__ import annotations

import pytest

from shared.topology import Topology
from tests.topology.machines import fixture_topology


@pytest.fixture
def vm2() -> Topology:
    return fixture_topology("vm-2core")


@pytest.fixture
def epyc() -> Topology:
    return fixture_topology("epyc-7502p")


@pytest.fixture
def dual() -> Topology:
    return fixture_topology("dual-xeon-6248")
