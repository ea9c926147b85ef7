"""``load_engine(role, settings)``: the one call an agent's lifespan makes for its model.

- ``SYNDICATE_ENGINE_SCRIPT=/path/replies.json`` (a JSON list of reply strings): a
  ``ScriptedEngine`` answering them in order; or a list of rules ``{"when": "text",
  "reply": "..."}``: the first rule whose ``when`` occurs in the request's last message
  answers (no ``when``: any request). Integration tests of real service
  processes use it to run the whole bus without llama.cpp
  (``SYNDICATE_ENGINE_SCRIPT_DELAY``: seconds between streamed pieces, for slow-model tests;
  ``SYNDICATE_ENGINE_SCRIPT_SLOTS``: the slots it reports, so agents take that many jobs).
- otherwise the role's model from the roster (``SYNDICATE_ROSTER``; file overrides
  ``SYNDICATE_MODEL_PATH`` / ``SYNDICATE_MODEL_<ROLE>_PATH``), verified, loaded in a
  ``LlamaEngine`` pinned to ``settings.cpus`` (all cpus this process may use when unset).

Loading blocks for up to a second or two (mmap + warm-up): call it from a thread
(``await asyncio.to_thread(load_engine, role, settings)``) inside an event loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from shared.errors import ConfigError
from shared.llm.base import GenerationRequest, ScriptedEngine, TextEngine
from shared.settings import Settings, parse_cpus


def load_engine(role: str, settings: Settings | None = None) -> TextEngine:
    """The engine for ``role``; raises ModelUnavailable / ConfigError with a clear fix."""
    settings = settings or Settings()
    script = os.environ.get("SYNDICATE_ENGINE_SCRIPT")
    if script:
        return _scripted(Path(script), role)
    from shared.llm.fetch import ensure_model
    from shared.llm.llama import EngineConfig, LlamaEngine
    from shared.llm.roster import load_roster

    roster = load_roster(os.environ.get("SYNDICATE_ROSTER") or settings.roster)
    resolved = roster.role(role)
    ensure_model(resolved)
    if resolved.draft is not None:
        ensure_model(resolved.draft)
    cpus = parse_cpus(settings.cpus) or None
    if cpus is not None:
        allowed = os.sched_getaffinity(0)
        if not set(cpus) <= allowed:
            raise ConfigError(
                f"SYNDICATE_CPUS={settings.cpus} names cpus this process may not use "
                f"(allowed: {sorted(allowed)})"
            )
    config = EngineConfig.from_role(resolved, cpus)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    config.threads = int(omp) if omp.isdigit() and int(omp) > 0 else None  # the plan's physical cores
    return LlamaEngine(config)


def _scripted(path: Path, role: str) -> ScriptedEngine:
    try:
        replies = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"SYNDICATE_ENGINE_SCRIPT={path}: {e}") from e
    if isinstance(replies, list) and replies and all(isinstance(r, dict) and isinstance(r.get("reply"), str)
                                                     for r in replies):
        replies = [_by_rules(replies)]
    elif not isinstance(replies, list) or not replies or not all(isinstance(r, str) for r in replies):
        raise ConfigError(f"SYNDICATE_ENGINE_SCRIPT={path} must hold a non-empty JSON list of strings or of "
                          '{"when": ..., "reply": ...} rules')
    delay = float(os.environ.get("SYNDICATE_ENGINE_SCRIPT_DELAY", "0") or 0)  # seconds per piece
    slots = int(os.environ.get("SYNDICATE_ENGINE_SCRIPT_SLOTS", "1") or 1)
    return ScriptedEngine(replies, name=f"scripted-{role}", token_delay_s=delay, slots=slots)


def _by_rules(rules: list[dict[str, str]]) -> Callable[[GenerationRequest], str]:
    """A scripted reply chosen by the request's last message (the first rule that matches)."""

    def reply(request: GenerationRequest) -> str:
        last = request.messages[-1].get("content", "") if request.messages else getattr(request, "prompt", "") or ""
        for rule in rules:
            if rule.get("when", "") in str(last):
                return rule["reply"]
        return rules[-1]["reply"]

    return reply
