"""CPU topology discovery and the placement planner (which cores each agent owns).

from shared.topology import discover, plan_placement
plan = plan_placement(discover(), {"coder": RoleSpec(weight=2)})
"""

from shared.topology.discovery import Topology, discover
from shared.topology.planning import (
    DEFAULT_ROLES,
    AgentPlacement,
    PlacementPlan,
    RoleSpec,
    default_roles,
    parse_roles,
    plan_placement,
)

__all__ = [
    "DEFAULT_ROLES",
    "AgentPlacement",
    "PlacementPlan",
    "RoleSpec",
    "Topology",
    "default_roles",
    "discover",
    "parse_roles",
    "plan_placement",
]
