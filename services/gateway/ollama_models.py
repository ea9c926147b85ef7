"""What Ollama's model endpoints say about the syndicate's models: ``/api/tags`` (every
served model, the retriever's embedder and the agents), ``/api/ps`` (the loaded models
with the processes that serve them: cores, threads, slots, context) and ``/api/show``.

A served model is known from the health replies of the processes that load it
(shared/generation/client.py); its file facts (size, architecture, quantization) come
from the agent's health details (``model_file``, shared/llm/gguf_meta.py:served_facts) and
its digest from the roster's pinned sha256.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from typing import Any

import nats
from pydantic import ValidationError

from services.gateway.openai_schema import MODEL_DESCRIPTIONS, MODELS
from shared import subjects
from shared.bus import scatter
from shared.contracts import HealthPing, HealthReply
from shared.errors import ConfigError
from shared.generation.client import ServedModel
from shared.llm.roster import Roster, load_roster

AGENT_FAMILY = "syndicate-agent"  # details.family of an agent in /api/tags
RETRIEVER = "retriever"  # the service whose embedder /api/embed uses


def iso(ts: float) -> str:
    """An epoch time as Ollama writes times (RFC 3339, UTC)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC).timestamp())


@functools.lru_cache(maxsize=4)
def _roster(path: str) -> Roster | None:
    try:
        return load_roster(path)
    except (ConfigError, OSError):
        return None


def digest(name: str, roster_path: str) -> str:
    """The model file's pinned sha256 (the roster's), "" for a file outside the roster."""
    roster = _roster(roster_path)
    spec = roster.models.get(name) if roster else None
    return spec.sha256 or "" if spec else ""


def _file_facts(model: ServedModel) -> dict[str, Any]:
    for h in model.instances:
        if isinstance(facts := h.details.get("model_file"), dict):
            return facts
    return {}


def details(model: ServedModel) -> dict[str, Any]:
    """Ollama's ``details`` block of a served model."""
    facts = _file_facts(model)
    arch = facts.get("architecture") or ""
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch] if arch else None,
            "parameter_size": facts.get("parameter_size") or "", "quantization_level": facts.get("quant") or ""}


def n_ctx(model: ServedModel) -> int | None:
    """The context each request gets (one slot's), the smallest over the serving processes."""
    sizes = [int(h.details["n_ctx"]) for h in model.instances if h.details.get("n_ctx")]
    return min(sizes) if sizes else None


def tag_entry(model: ServedModel, *, started: int, roster_path: str) -> dict[str, Any]:
    """One entry of /api/tags."""
    name = f"{model.name}:latest"
    return {"name": name, "model": name, "modified_at": iso(started), "size": int(_file_facts(model).get("size") or 0),
            "digest": digest(model.name, roster_path), "details": details(model)}


def agent_entry(agent: str, started: int) -> dict[str, Any]:
    """An agent in /api/tags: chatting with it submits a task (text in, text out)."""
    name = f"{agent}:latest"
    return {"name": name, "model": name, "modified_at": iso(started), "size": 0, "digest": "",
            "details": {"parent_model": "", "format": "", "family": AGENT_FAMILY, "families": [AGENT_FAMILY],
                        "parameter_size": "", "quantization_level": ""},
            "description": MODEL_DESCRIPTIONS[agent]}


def instance_facts(h: HealthReply) -> dict[str, Any]:
    return {"service": h.service, "instance": h.instance, "state": h.state, "cpus": h.cpus, "threads": h.threads,
            "slots": h.details.get("slots"), "n_ctx": h.details.get("n_ctx"), "running": h.running,
            "queue_depth": h.queue_depth, "tokens_per_s": h.details.get("tokens_per_s")}


def ps_entry(model: ServedModel, *, started: int, roster_path: str) -> dict[str, Any]:
    """One entry of /api/ps: Ollama's fields (nothing expires: a model stays loaded while
    its agent runs; nothing sits in VRAM), then the processes serving it."""
    entry = tag_entry(model, started=started, roster_path=roster_path)
    del entry["modified_at"]
    return {**entry, "expires_at": None, "size_vram": 0, "context_length": n_ctx(model),
            "syndicate": {"slots": model.slots, "instances": [instance_facts(h) for h in model.instances]}}


def show_body(model: ServedModel, *, started: int, roster_path: str) -> dict[str, Any]:
    """/api/show of a served model."""
    facts = _file_facts(model)
    arch = facts.get("architecture") or "unknown"
    info: dict[str, Any] = {"general.architecture": arch, "general.name": facts.get("name") or model.name}
    if facts.get("parameter_count"):
        info["general.parameter_count"] = facts["parameter_count"]
    if facts.get("context_length"):
        info[f"{arch}.context_length"] = facts["context_length"]
    served_ctx = n_ctx(model)
    params = f"num_ctx {served_ctx}" if served_ctx else ""
    capabilities = ["completion", "tools"] if facts.get("has_chat_template", True) else ["completion"]
    return {"modelfile": f"# served by the syndicate: {', '.join(model.services)}\n", "parameters": params,
            "template": "", "details": details(model), "model_info": info, "capabilities": capabilities,
            "modified_at": iso(started)}


def agent_show(agent: str, started: int) -> dict[str, Any]:
    return {"modelfile": f"# the syndicate's agent {agent}: {MODEL_DESCRIPTIONS[agent]}\n", "parameters": "",
            "template": "", "details": agent_entry(agent, started)["details"],
            "model_info": {"general.architecture": AGENT_FAMILY, "syndicate.task_kind": MODELS[agent]},
            "capabilities": ["completion"], "modified_at": iso(started)}


async def embedders(nc: nats.NATS | None, wait_s: float = 0.3) -> dict[str, HealthReply]:
    """The retrievers' embedders by name (from a health ping; none while the bus is down)."""
    if nc is None:
        return {}
    out: dict[str, HealthReply] = {}
    for data in await scatter(nc, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), wait_s=wait_s):
        with contextlib.suppress(ValidationError, ValueError):
            h = HealthReply.model_validate_json(data)
            if h.service == RETRIEVER and h.model and h.state in ("ready", "degraded"):
                out.setdefault(h.model, h)
    return out


def embedder_entry(h: HealthReply, started: int) -> dict[str, Any]:
    """The retriever's embedder in /api/tags (/api/embed takes its name)."""
    name = f"{h.model}:latest"
    return {"name": name, "model": name, "modified_at": iso(started), "size": 0, "digest": "",
            "details": {"parent_model": "", "format": "", "family": "embedding", "families": ["embedding"],
                        "parameter_size": "", "quantization_level": ""},
            "dimensions": h.details.get("dim")}


def embedder_show(h: HealthReply, started: int) -> dict[str, Any]:
    return {"modelfile": f"# the retriever's embedder ({h.details.get('backend', '')})\n", "parameters": "",
            "template": "", "details": embedder_entry(h, started)["details"],
            "model_info": {"general.architecture": "embedding", "embedding.dimensions": h.details.get("dim")},
            "capabilities": ["embedding"], "modified_at": iso(started)}
