"""Speculative decoding, end to end per request with vs without it at temperature 0, same
engine, same process:

- code **edits** (the answer repeats most of the input) with prompt lookup on the coder
  role's model: ``speedup`` (all edits) ≥ 1.8;
- **fresh code** with a draft model: Qwen2.5-Coder-0.5B drafting for Qwen2.5-Coder-1.5B
  (``speculative = "draft"``): ``draft_speedup`` and ``draft_acceptance`` (share of
  model-drafted tokens the target kept), reported as measured (where the adaptive policy
  drafts nothing, the acceptance of a run verifying every draft: ``draft_acceptance_source``);
- ``min_speedup``: the slowest prompt of either kind (goal ≥ 0.98: the adaptive policy
  never makes a request slower), ``identical``: every speculative text equals the plain one;
- ``epyc_estimate``: the expected draft speedup on a memory-bound host (EPYC 7502P, 32
  cores), from the measured acceptance and the two models' bytes per token
  (docs/batching.md has the formula).

Runs alternate (plain, speculative) and clear the KV caches before each, so both pay the
same prompt evaluation and drift in machine load hits both alike.

    python bench/speculative.py [--quick] [--model PATH] [--k 10] [--no-adaptive] [--no-draft] [--draft-pair T,D]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

from _common import emit

from shared.llm.base import GenerationRequest

FRESH = [
    "Write a Python function `parse_duration(text)` that turns strings like '1h30m', '45s' or '2h' into seconds, with a docstring and input validation.",
    "Write a Python class `LRUCache` with `get` and `put` methods and a fixed capacity, using collections.OrderedDict.",
    "Write a Python function that reads a CSV file and returns the average of each numeric column as a dict.",
]

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "You are a precise coding assistant. Reply with the complete modified code in one python block, nothing else."

# (instruction, source file, start marker, end marker): real code of this repository.
EDITS = [
    ("Rename the function `parse_cpus` to `parse_cpu_list` (definition and every use). Output the whole code.",
     "shared/settings.py", "def parse_cpus", None),
    ("Add a type-annotated local variable `count: int = 0` at the start of `write_tiny_model` and leave everything else unchanged. Output the whole code.",
     "shared/llm/tiny.py", "def tiny_vocab", "def _file_type"),
    ("Rename the parameter `path` to `file_path` in `read_gguf_metadata` and its uses. Output the whole code.",
     "shared/llm/gguf_meta.py", "def _read(", "def describe"),
]


def _snippet(file: str, start: str, end: str | None, limit: int = 2400) -> str:
    text = (REPO / file).read_text()
    i = text.index(start)
    j = text.index(end, i) if end else len(text)
    return text[i:j][:limit].rstrip() + "\n"


def _messages(instruction: str, code: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{instruction}\n\n```python\n{code}```"}]


async def compare(eng, msgs: list[dict[str, str]], max_tokens: int) -> dict:  # type: ignore[no-untyped-def]
    """One prompt plain then speculative, from empty caches: timings, acceptance, identity."""
    res = {}
    before = dict(eng.stats())
    for spec in (False, True):
        eng._reset_cache()
        res[spec] = await eng.generate(GenerationRequest(messages=msgs, max_tokens=max_tokens, temperature=0.0,
                                                         speculative=spec))
    after = eng.stats()
    plain, fast = res[False], res[True]
    drafted = {k: after[f"spec_{k}_drafted"] - before[f"spec_{k}_drafted"] for k in ("lookup", "model")}
    accepted = {k: after[f"spec_{k}_accepted"] - before[f"spec_{k}_accepted"] for k in ("lookup", "model")}
    return {
        "input_tokens": plain.input_tokens, "output_tokens": plain.output_tokens,
        "plain_s": round(plain.seconds, 3), "spec_s": round(fast.seconds, 3),
        "plain_ttft_s": round(plain.ttft_s or 0, 3), "spec_ttft_s": round(fast.ttft_s or 0, 3),
        "plain_tok_s": round(plain.tokens_per_s, 1), "spec_tok_s": round(fast.tokens_per_s, 1),
        "acceptance": round(fast.spec_acceptance or 0.0, 3), "drafted": drafted, "accepted": accepted,
        "resyncs": after.get("last_spec_resyncs", 0), "identical": plain.text == fast.text,
        "speedup": round(plain.seconds / fast.seconds, 3),
    }


async def run_edits(model: Path, *, quick: bool, k: int, adaptive: bool, max_tokens: int) -> list[dict]:
    from shared.llm.llama import EngineConfig, LlamaEngine

    eng = LlamaEngine(EngineConfig(
        model_path=model, name="coder", n_ctx=4096, speculative="prompt-lookup",
        spec_num_pred_tokens=k, spec_adaptive=adaptive, cpus=sorted(os.sched_getaffinity(0)),
    ))
    rows = []
    try:
        # warm-up: first decode of a fresh context allocates buffers
        await eng.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
        for instruction, file, start, end in EDITS[:1] if quick else EDITS:
            rows.append({"kind": "edit", "file": file, **await compare(
                eng, _messages(instruction, _snippet(file, start, end, 1200 if quick else 2400)), max_tokens)})
            print(rows[-1], file=sys.stderr)
    finally:
        await eng.aclose()
    return rows


async def run_draft(target: Path, draft: Path, *, quick: bool, adaptive: bool, max_tokens: int,
                    draft_tokens: int) -> list[dict]:
    from shared.llm.llama import EngineConfig, LlamaEngine

    eng = LlamaEngine(EngineConfig(
        model_path=target, name="coder-1.5b", n_ctx=2048, speculative="draft", draft_model_path=draft,
        draft_tokens=draft_tokens, spec_adaptive=adaptive, cpus=sorted(os.sched_getaffinity(0)),
    ))
    rows = []
    try:
        await eng.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
        for prompt in FRESH[:2] if quick else FRESH:
            rows.append({"kind": "fresh", "prompt": prompt[:40], **await compare(
                eng, [{"role": "user", "content": prompt}], max_tokens)})
            print(rows[-1], file=sys.stderr)
    finally:
        await eng.aclose()
    return rows


async def forced_acceptance(target: Path, draft: Path, *, quick: bool, max_tokens: int, draft_tokens: int) -> float | None:
    """The draft model's acceptance with every draft verified (no timing): what the pair
    would give where drafting pays, for the EPYC estimate when this host's policy drafts
    nothing."""
    from shared.llm.llama import EngineConfig, LlamaEngine

    eng = LlamaEngine(EngineConfig(
        model_path=target, name="coder-1.5b-forced", n_ctx=2048, speculative="draft", draft_model_path=draft,
        draft_tokens=draft_tokens, spec_adaptive=False, cpus=sorted(os.sched_getaffinity(0)),
    ))
    try:
        for prompt in FRESH[:2] if quick else FRESH:
            await eng.generate(GenerationRequest(messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=max_tokens, temperature=0.0, speculative=True))
        st = eng.stats()
    finally:
        await eng.aclose()
    return st["spec_model_accepted"] / st["spec_model_drafted"] if st["spec_model_drafted"] else None


def epyc_estimate(acceptance: float, target_bytes: int, draft_bytes: int, d_max: int = 8) -> dict:
    """Expected draft-model speedup where a decode step costs the time to read the weights
    (memory-bound: verifying d+1 tokens costs one target step, a draft token costs
    r = draft_bytes / target_bytes of one): S(d) = (1 - a^(d+1)) / (1 - a) / (1 + d*r)."""
    a, r = min(acceptance, 0.999), draft_bytes / target_bytes
    best = max(range(1, d_max + 1), key=lambda d: (1 - a ** (d + 1)) / (1 - a) / (1 + d * r))
    speedup = (1 - a ** (best + 1)) / (1 - a) / (1 + best * r)
    return {"acceptance": round(acceptance, 3), "bytes_ratio": round(r, 3), "best_draft_tokens": best,
            "speedup": round(speedup, 3)}


def summary(edits: list[dict], fresh: list[dict], target: Path | None, draft: Path | None,
            forced: float | None = None, **info) -> dict:  # type: ignore[no-untyped-def]
    def total(rows: list[dict]) -> float | None:
        return round(sum(r["plain_s"] for r in rows) / sum(r["spec_s"] for r in rows), 3) if rows else None

    model_drafted = sum(r["drafted"]["model"] for r in fresh)
    acceptance = sum(r["accepted"]["model"] for r in fresh) / model_drafted if model_drafted else None
    source = "adaptive" if acceptance is not None else "forced" if forced is not None else None
    acceptance = acceptance if acceptance is not None else forced
    rows = edits + fresh
    out = {
        "bench": "speculative", **info, "load_average": os.getloadavg()[0],
        "speedup": total(edits),
        "edit_acceptance": round(statistics.mean(r["acceptance"] for r in edits), 3) if edits else None,
        "ttft_ratio": round(sum(r["spec_ttft_s"] for r in rows) / sum(r["plain_ttft_s"] for r in rows), 3),
        "draft_speedup": total(fresh),
        "draft_acceptance": round(acceptance, 3) if acceptance is not None else None,
        # "forced": the policy drafted nothing here, so every draft was verified in a run of its own
        "draft_acceptance_source": source,
        "min_speedup": min(r["speedup"] for r in rows),
        "identical": all(r["identical"] for r in rows),
        "cases": rows,
    }
    if acceptance is not None and target and draft:
        out["epyc_estimate"] = epyc_estimate(acceptance, target.stat().st_size, draft.stat().st_size)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one edit, two fresh prompts, fewer tokens")
    p.add_argument("--model", type=Path, default=None, help="GGUF for the edits (default: the roster's coder model)")
    p.add_argument("--k", type=int, default=None, help="prompt-lookup draft tokens per step (default: the roster's)")
    p.add_argument("--no-adaptive", action="store_true", help="verify every draft found")
    p.add_argument("--no-draft", action="store_true", help="skip the draft-model part")
    p.add_argument("--draft-tokens", type=int, default=4)
    p.add_argument("--draft-pair", default=None, help="TARGET.gguf,DRAFT.gguf instead of Qwen 1.5B / 0.5B")
    p.add_argument("--max-tokens", type=int, default=None)
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    roster = load_roster()
    role = roster.role("coder")
    model = a.model or ensure_model(role)
    k = a.k or role.config.spec_num_pred_tokens
    max_tokens = a.max_tokens or (300 if a.quick else 700)
    edits = asyncio.run(run_edits(model, quick=a.quick, k=k, adaptive=not a.no_adaptive, max_tokens=max_tokens))
    target = draft = None
    fresh: list[dict] = []
    if a.draft_pair:
        target, draft = (Path(x) for x in a.draft_pair.split(","))
    elif not a.no_draft:
        env = {"SYNDICATE_MODEL_CODER_MODEL": "qwen2_5-coder-1_5b", "SYNDICATE_MODEL_CODER_SPECULATIVE": "draft",
               "SYNDICATE_MODEL_CODER_DRAFT_MODEL": "qwen2_5-coder-0_5b"}
        pair = roster.role("coder", env=env)
        assert pair.draft is not None
        target, draft = ensure_model(pair), ensure_model(pair.draft)
    if target is not None and draft is not None:
        fresh = asyncio.run(run_draft(target, draft, quick=a.quick, adaptive=not a.no_adaptive,
                                      max_tokens=200 if a.quick else 400, draft_tokens=a.draft_tokens))
    forced = None
    if fresh and not any(r["drafted"]["model"] for r in fresh):
        forced = asyncio.run(forced_acceptance(target, draft, quick=a.quick, max_tokens=200 if a.quick else 400,  # type: ignore[arg-type]
                                               draft_tokens=a.draft_tokens))
    emit(summary(edits, fresh, target, draft, forced, model=model.name, draft_pair=[p.name for p in (target, draft) if p],
                 k=k, adaptive=not a.no_adaptive))


if __name__ == "__main__":
    main()
