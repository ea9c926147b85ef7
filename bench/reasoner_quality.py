"""Reasoner quality: does the reasoner beat its own model answering once?

GSM8K (first 50 test problems with --quick, first 250 otherwise, --limit N):
- ``single``: the model answering once as its users run it: plain llama-cpp-python in its
  own process with its default settings (threads, no pinning, none of our environment),
  greedy, under the evaluator's GSM8K prompt (shared/evaluation/prompts.py).
- ``agent``: reasoner-agent's own Answerer on the project's engine (one pinned core, the
  reasoner role's slots): self-consistency, i.e. ``vote_chains`` chains in parallel
  slots under the same prompt, and a majority vote.
Both are scored by the evaluator's GSM8K exact match (its own answer extraction).

Collections (bench/_reasoner_defi.py): the Answerer over the retriever's own index
(in-process, real embedder) of the DeFi notes (``defi``: prose, examples/defi-notes) and of
five standard-library modules (``code``): answer correctness (every required fact
stated), citation precision and recall against the labelled lines, the "nothing relevant"
rate on off-corpus questions and the false "nothing relevant" rate on answerable ones.

Every item's result goes to a JSONL file under --results as it finishes; a rerun resumes
(--fresh starts over). Accuracy does not depend on load, so long runs may go in the
background at `nice -n 10`. Goals: agent_acc >= single_acc + 8 points; citation
precision >= 0.9.

    python bench/reasoner_quality.py --quick                      # the roster's reasoner model
    python bench/reasoner_quality.py --quick --model qwen2_5-coder-1_5b
    python bench/reasoner_quality.py --quick --arms defi
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from bench._reasoner_defi import run_collection  # noqa: E402
from bench._reasoner_gsm8k import gsm8k_items, run_agent, score_gsm8k  # noqa: E402

GOAL_GAIN_POINTS = 8.0
GOAL_CITATION_PRECISION = 0.9
ARMS = ("single", "agent", "defi", "code")
COLLECTIONS = ("defi", "code")
GOAL_FALSE_REFUSALS = 0.05  # answerable questions answered "nothing relevant"
GOAL_OFF_CORPUS = 0.9  # off-corpus questions answered "nothing relevant"
GOAL_FACTS = 0.9  # DeFi answers stating every required fact


def resolved_role(model: str | None):  # type: ignore[no-untyped-def]
    """The reasoner role from the roster, its model replaced by ``model`` when given."""
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    env = dict(os.environ)
    if model:
        env["SYNDICATE_MODEL_REASONER_MODEL"] = model
    role = load_roster().role("reasoner", env)
    ensure_model(role)
    return role


def run_single(model_path: Path, items: list, out: Path, cpus: str | None) -> None:
    """The baseline arm in its own process, with the peer's defaults and not our environment."""
    done = _done_ids(out)
    todo = [i for i in items if i.id not in done]
    if not todo:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATE_", "OMP_"))}
    cmd = [sys.executable, str(REPO / "bench" / "_reasoner_gsm8k.py"), str(model_path), str(out),
           json.dumps([i.id for i in todo])]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    subprocess.run(cmd, env=env, check=True)


def _done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="GSM8K: the first 50 problems")
    ap.add_argument("--limit", type=int, default=None, help="GSM8K: the first N problems (default 250)")
    ap.add_argument("--model", default=None, help="roster model id (default: the reasoner role's)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    ap.add_argument("--results", type=Path, default=None, help="per-item results (default .syndicate/bench/reasoner/<model>)")
    ap.add_argument("--fresh", action="store_true", help="discard earlier per-item results of the arms run")
    ap.add_argument("--agent-cpus", default=None, help="cores of the agent arm's engine (default: one core, the last)")
    ap.add_argument("--shard", default="0/1", help="agent arm: work items K, K+N, ... (K/N), so N processes share it")
    ap.add_argument("--single-cpus", default=None, help="taskset for the baseline process (default: unpinned)")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := set(arms) - set(ARMS):
        ap.error(f"unknown arms: {sorted(unknown)}")
    role = resolved_role(args.model)
    results = args.results or REPO / ".syndicate" / "bench" / "reasoner" / role.model_id
    results.mkdir(parents=True, exist_ok=True)
    if args.fresh:  # only the files of the arms run now: another process may be filling the others
        for arm in arms:
            (results / (f"{arm}.jsonl" if arm in COLLECTIONS else f"gsm8k_{arm}.jsonl")).unlink(missing_ok=True)
    limit = 50 if args.quick else (args.limit or 250)
    cpus = [int(c) for c in args.agent_cpus.split(",")] if args.agent_cpus else [max(os.sched_getaffinity(0))]
    out: dict = {"bench": "reasoner_quality", "model": role.model_id, "agent_cpus": cpus,
                 "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    t0 = time.time()
    items = gsm8k_items(limit) if {"single", "agent"} & set(arms) else []
    if items:
        out["gsm8k_n"] = len(items)
    if "single" in arms:
        run_single(role.path, items, results / "gsm8k_single.jsonl", args.single_cpus)
    engine = None
    if {"agent", *COLLECTIONS} & set(arms):
        from shared.llm.llama import EngineConfig, LlamaEngine

        engine = LlamaEngine(EngineConfig.from_role(role, cpus))
        out["agent_threads"] = engine.stats().get("threads")
        out["slots"] = engine.slots
    try:
        if "agent" in arms:
            assert engine is not None
            k, n = (int(x) for x in args.shard.split("/"))
            asyncio.run(run_agent(engine, items[k::n], results / "gsm8k_agent.jsonl"))
        for name in COLLECTIONS:
            if name in arms:
                assert engine is not None
                out[name] = asyncio.run(run_collection(engine, results / f"{name}.jsonl", name))
    finally:
        if engine is not None:
            engine.close()
    out |= score_gsm8k(items, results)
    if "single_acc" in out and "agent_acc" in out:
        out["gain_points"] = round(100 * (out["agent_acc"] - out["single_acc"]), 1)
        out["goal_gain_met"] = out["gain_points"] >= GOAL_GAIN_POINTS
    if "defi" in out:
        out["goal_citation_precision_met"] = out["defi"]["citation_precision"] >= GOAL_CITATION_PRECISION
        out["goal_facts_met"] = out["defi"]["answer_correct"] >= GOAL_FACTS
    if set(COLLECTIONS) & set(out):
        got = [out[c] for c in COLLECTIONS if c in out]
        out["goal_false_refusals_met"] = all(g["refused_answerable_rate"] <= GOAL_FALSE_REFUSALS for g in got)
        out["goal_off_corpus_met"] = all(g["nothing_relevant_rate"] >= GOAL_OFF_CORPUS for g in got)
    out["wall_s"] = round(time.time() - t0, 1)
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    emit(out)


if __name__ == "__main__":
    main()
