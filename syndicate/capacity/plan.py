"""What fits my server: for a roster and a machine, every agent's memory and expected
generation rate, whether all of it fits with headroom, and what the agents measured when
they last ran.

The machine is this one (sysfs ``/``, MemTotal, a bandwidth probe on each agent's cores)
or a recorded one (``--sysfs ROOT --ram 512G --bandwidth 150``). Agents get their cores
from the placement planner, as ``syndicate up`` gives them. Agents mapping the same model
file share its pages, so the total counts each file once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from shared.errors import ConfigError
from shared.llm.roster import Roster
from shared.measurements import record_path, resident_bytes
from shared.registry import service_for_role
from shared.topology import RoleSpec, discover, plan_placement
from shared.topology.planning import DEFAULT_ROLES
from syndicate.capacity import bandwidth as bw
from syndicate.capacity.memory import AgentMemory, RoleLoad, agent_memory
from syndicate.capacity.roofline import expected_tok_s
from syndicate.capacity.shape import ModelShape, RosterShape, read_shape

# nats-server, retriever (embedder + Qdrant), code-sandbox, gateway and evaluator together,
# measured as RSS under `make run` on this machine: 403 MB (retriever 173, evaluator 76,
# gateway 66, code-sandbox 64, nats-server 24), plus room for sandboxed programs.
SERVICES_BYTES = 450 * 10**6
HEADROOM = 0.10  # of RAM kept free for the OS, page cache and bursts


class AgentPlan(BaseModel):
    role: str
    service: str
    model: str
    path: str
    file_exists: bool
    quant: str
    cores: int
    threads: int
    cpus: list[int] = Field(default_factory=list)
    memory: AgentMemory
    memory_bytes: int
    expected_tok_s: float | None  # None: memory-only plan
    bandwidth_source: str
    bandwidth_gbps: dict[str, float] = Field(default_factory=dict)  # per weight type (probe), or "all"
    probe_loadavg: float | None = None
    measured: dict[str, Any] = Field(default_factory=dict)  # rss_bytes, gen_tok_s, at (when it last ran)


class CapacityPlan(BaseModel):
    machine: dict[str, Any]
    agents: dict[str, AgentPlan]
    services_bytes: int
    shared_weight_bytes: int  # weights counted once although several agents map them
    total_bytes: int
    budget_bytes: int  # RAM minus headroom
    fits: bool
    biggest: list[str]  # roles by memory, largest first
    notes: list[str] = Field(default_factory=list)


def parse_size(text: str) -> int:
    """'512G', '24GiB', '1.5T', '800M' -> bytes (powers of 1024, as RAM is counted)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)i?b?\s*", text, flags=re.I)
    if not m:
        raise ConfigError(f"cannot read the size {text!r} (e.g. 512G, 24GiB, 800M)")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


def machine_ram(root: Path) -> int | None:
    """MemTotal of the machine under ``root``: /proc/meminfo, else the sum of the NUMA
    nodes' meminfo (a recorded sysfs tree)."""
    sources = [root / "proc/meminfo", *sorted((root / "sys/devices/system/node").glob("node[0-9]*/meminfo"))]
    for group in (sources[:1], sources[1:]):
        total = 0
        for p in group:
            m = re.search(r"MemTotal:\s+(\d+) kB", p.read_text()) if p.is_file() else None
            total += int(m.group(1)) * 1024 if m else 0
        if total:
            return total
    return None


def model_shape(roster: Roster, role: str) -> tuple[ModelShape, str, Path, bool]:
    """(shape, quant, path, file exists) of a role's model: the file's header when it is
    there, else the roster's ``size`` and ``shape``."""
    resolved = roster.role(role)
    spec, path = resolved.spec, resolved.path
    if path.is_file():
        shape = read_shape(path)
        from shared.evaluation.models import gguf_file_type

        return shape, gguf_file_type(path), path, True
    if spec.shape is None or not spec.size:
        raise ConfigError(f"role {role!r}: its model file {path} does not exist and the roster gives no size and "
                          f"[models.{resolved.model_id}.shape] to plan it by")
    given = RosterShape.model_validate(spec.shape)
    return given.model_shape(spec.size), given.quant.upper(), path, False


def last_measured(state_dir: Path, role: str) -> dict[str, Any]:
    """What the agent recorded when it last ran (``<state>/agents/<role>.json``)."""
    p = record_path(state_dir, role)
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return {}


def make_plan(roster: Roster, *, sysfs: Path, ram: int | None, bandwidth_gbps: float | None,
              state_dir: Path, headroom: float = HEADROOM, roles: list[str] | None = None,
              speed: bool = True, live_pids: dict[str, int] | None = None, fresh_probe: bool = False) -> CapacityPlan:
    """The capacity plan (module docstring). ``bandwidth_gbps`` None: probe this machine;
    ``speed`` False: memory only (``syndicate up``); ``live_pids``: service -> pid of a
    running stack, whose resident memory is read now."""
    live = sysfs.resolve() == Path("/")
    ram = ram or machine_ram(sysfs)
    if ram is None:
        raise ConfigError(f"no memory size under {sysfs}: pass --ram (e.g. --ram 512G)")
    if speed and not live and bandwidth_gbps is None:
        raise ConfigError("a recorded machine (--sysfs) needs its memory bandwidth: pass --bandwidth GB/s")
    topology = discover(sysfs)
    # Services placed like agents without a model of their own (the evaluator) are not planned.
    roles = sorted(r for r in (roles if roles is not None else roster.roles) if r in roster.roles)
    placement = plan_placement(topology, {r: DEFAULT_ROLES.get(r, RoleSpec()) for r in roles})
    agents: dict[str, AgentPlan] = {}
    files: dict[str, int] = {}
    for role in roles:
        cfg, place = roster.roles[role], placement.agents[role]
        shape, quant, path, exists = model_shape(roster, role)
        draft = None
        resolved = roster.role(role)
        if resolved.draft is not None and resolved.draft.path.is_file():
            draft = read_shape(resolved.draft.path)
        load = RoleLoad(slots=cfg.slots, n_ctx=cfg.n_ctx, n_batch=cfg.n_batch,
                        repack=not (cfg.exact_batching and cfg.slots > 1))
        memory = agent_memory(shape, load, quant=quant, draft=draft)
        if not speed:
            band = None
        elif bandwidth_gbps is not None:
            band = bw.from_flag(bandwidth_gbps, place.cores, len(topology.cores))
        else:
            band = bw.probe(sorted(shape.bytes_by_type), place.threads, place.cpus, fresh_probe)
        files[str(path)] = shape.file_bytes
        service = service_for_role(role) or f"{role}-agent"
        measured = last_measured(state_dir, role) if live else {}
        if live and (pid := (live_pids or {}).get(service)) and (now := resident_bytes(pid)):
            measured |= {"rss_now_bytes": now["rss_bytes"], "rss_peak_bytes": now.get("rss_peak_bytes")}
        agents[role] = AgentPlan(
            role=role, service=service, model=resolved.model_id, path=str(path),
            file_exists=exists, quant=quant, cores=place.cores, threads=place.threads, cpus=place.cpus,
            memory=memory, memory_bytes=memory.total,
            expected_tok_s=round(expected_tok_s(shape, cfg.n_ctx, band), 2) if band else None,
            bandwidth_source=band.source if band else "", measured=measured,
            bandwidth_gbps={k: round(v, 2) for k, v in (band.gbps_by_type or {"all": band.default_gbps}).items()} if band else {},
            probe_loadavg=band.probe_loadavg if band else None,
        )
    shared = sum(a.memory.weights for a in agents.values()) - sum(files.values())
    total = sum(a.memory_bytes for a in agents.values()) - shared + SERVICES_BYTES
    budget = int(ram * (1 - headroom))
    notes = list(placement.notes)
    if shared:
        notes.append(f"{shared / 1e9:.2f} GB of weights are mapped by several agents and counted once")
    return CapacityPlan(
        machine={"sysfs": str(sysfs), "ram_bytes": ram, "cores": len(topology.cores), "headroom": headroom,
                 "bandwidth_gbps": bandwidth_gbps, "bandwidth": "probe" if bandwidth_gbps is None else "--bandwidth"},
        agents=agents, services_bytes=SERVICES_BYTES, shared_weight_bytes=shared, total_bytes=total,
        budget_bytes=budget, fits=total <= budget,
        biggest=sorted(agents, key=lambda r: -agents[r].memory_bytes), notes=notes,
    )


def refusal(plan: CapacityPlan) -> str:
    """Why the roster does not fit, naming the biggest consumers."""
    top = ", ".join(f"{r} ({plan.agents[r].model}, {plan.agents[r].memory_bytes / 1e9:.1f} GB)" for r in plan.biggest[:3])
    return (f"the roster needs {plan.total_bytes / 1e9:.1f} GB but this machine has {plan.budget_bytes / 1e9:.1f} GB "
            f"to give ({plan.machine['ram_bytes'] / 1e9:.1f} GB RAM less {plan.machine['headroom']:.0%} headroom); "
            f"biggest: {top}. Use smaller quants, fewer slots or a shorter n_ctx (see `syndicate plan`)")
