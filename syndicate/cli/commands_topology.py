"""``syndicate topology``: the machine's L3 groups (CCX/CCD) and the placement plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.errors import ConfigError
from shared.settings import format_cpus
from shared.topology import (
    PlacementPlan,
    Topology,
    default_roles,
    discover,
    parse_roles,
    plan_placement,
)


def compose_yaml(plan: PlacementPlan) -> str:
    """A compose.yaml fragment: ``cpuset`` and placement environment per service."""
    lines = ["services:"]
    for service, entry in plan.compose_cpusets().items():
        lines.append(f"  {service}:")
        if "cpuset" in entry:
            lines.append(f'    cpuset: "{entry["cpuset"]}"')
        env = {k: v for k, v in entry.items() if k != "cpuset"}
        if env:
            lines.append("    environment:")
            lines += [f'      {k}: "{v}"' for k, v in env.items()]
    return "\n".join(lines) + "\n"


def _render(console: Console, topology: Topology, plan: PlacementPlan) -> None:
    groups = Table(title=f"L3 groups ({topology.l3_source}) under {topology.source}")
    for col in ("group", "cpus", "cores", "NUMA node", "owner"):
        groups.add_column(col)
    owner: dict[int, list[str]] = {}
    for role, a in plan.agents.items():
        for g in a.l3_groups:
            owner.setdefault(g, []).append(role)
    shared_groups = set(topology.groups_of(plan.shared_cpus))
    for g, cpus in enumerate(topology.l3_groups):
        names = owner.get(g, []) + (["shared"] if g in shared_groups else [])
        groups.add_row(
            str(g),
            format_cpus(list(cpus)),
            str(len(topology.group_cores(g))),
            str(topology.node_of_group(g)),
            ", ".join(names),
        )
    console.print(groups)

    table = Table(title=f"Placement plan ({plan.mode})")
    for col in ("role", "weight", "cpus", "cores", "threads", "OpenMP wait", "L3 groups", "NUMA"):
        table.add_column(col)
    for role, a in plan.agents.items():
        table.add_row(
            role if a.exclusive else f"{role} (shares its core)",
            f"{a.weight:g}",
            format_cpus(a.cpus),
            str(a.cores),
            str(a.threads),
            a.env.get("OMP_WAIT_POLICY", "default"),
            ",".join(map(str, a.l3_groups)),
            ",".join(map(str, a.numa_nodes)),
        )
    shared_cores = topology.physical_cores(plan.shared_cpus)
    table.add_row(
        "shared services",
        "",
        format_cpus(plan.shared_cpus) or "(float)",
        str(shared_cores or ""),
        plan.shared_env.get("OMP_NUM_THREADS", ""),
        plan.shared_env.get("OMP_WAIT_POLICY", "default"),
        ",".join(map(str, topology.groups_of(plan.shared_cpus))),
        ",".join(map(str, topology.nodes_of(plan.shared_cpus))),
    )
    console.print(table)
    for note in plan.notes + list(topology.notes):
        console.print(f"[yellow]note:[/yellow] {note}")


def topology(
    sysfs: Annotated[Path, typer.Option("--sysfs", help="Root of the sysfs tree to read.")] = Path(
        "/"
    ),
    roles: Annotated[
        str | None,
        typer.Option(help="name=weight[:min_cores],... (default: coder=2,reasoner=2,router=0.5)"),
    ] = None,
    shared_cores: Annotated[
        int | None, typer.Option(help="Cores reserved for sandbox/retriever/NATS (default: auto).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    compose: Annotated[bool, typer.Option(help="Print a compose.yaml cpuset snippet.")] = False,
) -> None:
    """Show the CPU's L3 groups (CCX/CCD) and which cores each agent gets."""
    try:
        topo = discover(sysfs)
        plan = plan_placement(
            topo, parse_roles(roles) if roles else default_roles(), shared_cores=shared_cores
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(plan.summary(topo), indent=2))
    elif compose:
        typer.echo(compose_yaml(plan), nl=False)
    else:
        _render(Console(), topo, plan)


def register(app: typer.Typer) -> None:
    """Add ``topology`` to the CLI."""
    app.command("topology")(topology)
