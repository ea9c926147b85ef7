"""A reason task answered with votes vs one plain answer, same model, same cores and threads,
in one run.

- votes: reasoner-agent's Answerer on its engine (the reasoner role's slots, pinned to
  ``--cpus``): a question with a checkable answer gets ``vote_chains`` reasoning chains
  of one prompt decoded together, stopped once no outcome can change the vote;
- plain: the same question as a user's one chat message to plain llama-cpp-python in its
  own process (bench/_baseline.py), pinned to the same cores with the same threads.
Questions: the first ``--limit`` GSM8K test problems. Both answers are scored by the
evaluator's GSM8K exact match. Goal: votes ÷ plain seconds ≤ 1.5. Last line: one JSON object.

    flock /work/wt/heavy.lock python bench/reasoner_votes.py --limit 8
    flock /work/wt/heavy.lock python bench/reasoner_votes.py --model qwen2_5-coder-1_5b
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import emit  # noqa: E402
from _reasoner_gsm8k import gsm8k_items  # noqa: E402
from reasoner_quality import resolved_role  # noqa: E402
from stack_vs_plain import PinnedPlain  # noqa: E402

from shared.evaluation import metrics  # noqa: E402

GOAL_RATIO = 1.5


async def votes_arm(role, items, cpus: list[int], chains: int | None) -> list[dict]:  # type: ignore[no-untyped-def]
    from services.reasoner_agent.answerer import Answerer
    from services.reasoner_agent.settings import ReasonerSettings
    from shared.contracts import AgentJob, SearchReply, SearchRequest
    from shared.llm.llama import EngineConfig, LlamaEngine

    async def no_search(req: SearchRequest) -> SearchReply:
        raise AssertionError("no collection")

    settings = ReasonerSettings(**({"vote_chains": chains} if chains else {}))
    engine = LlamaEngine(EngineConfig.from_role(role, cpus))
    rows = []
    try:
        answerer = Answerer(engine, no_search, settings)
        for k, item in enumerate(items):
            job = AgentJob(task_id=f"v{k}", step_id=f"v{k}.1", agent="reasoner", text=item.question, deadline=time.time() + 3600)
            t0 = time.perf_counter()
            res = await answerer.answer(job)
            rows.append({"id": item.id, "seconds": round(time.perf_counter() - t0, 2), "tokens": res.usage.output_tokens,
                         "correct": metrics.qa_exact_match(res.answer, item.answer), "sentence": res.answer.rsplit("\n", 1)[-1]})
            print("votes", rows[-1], flush=True)
    finally:
        engine.close()
    return rows


def plain_arm(role, items, cpus: list[int], threads: int, max_tokens: int) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = []
    with PinnedPlain(role.path, threads=threads, cpus=cpus) as peer:
        for item in items:
            t0 = time.perf_counter()
            r = peer.generate([{"role": "user", "content": item.question}], max_tokens=max_tokens)
            rows.append({"id": item.id, "seconds": round(time.perf_counter() - t0, 2), "tokens": r["tokens"],
                         "correct": metrics.qa_exact_match(r["text"], item.answer)})
            print("plain", rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--model", default=None, help="roster model id (default: the reasoner role's)")
    ap.add_argument("--cpus", default=None, help="cores of both arms (default: one core, the last)")
    ap.add_argument("--chains", type=int, default=None, help="vote_chains (default: the agent's setting)")
    ap.add_argument("--max-tokens", type=int, default=1024)
    args = ap.parse_args()
    role = resolved_role(args.model)
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else [max(os.sched_getaffinity(0))]
    items = gsm8k_items(args.limit)
    load_start = os.getloadavg()
    votes = asyncio.run(votes_arm(role, items, cpus, args.chains))
    plain = plain_arm(role, items, cpus, len(cpus), args.max_tokens)
    v, p = statistics.fmean(r["seconds"] for r in votes), statistics.fmean(r["seconds"] for r in plain)
    emit({
        "bench": "reasoner_votes", "model": role.model_id, "cpus": cpus, "n": len(items),
        "votes_seconds": round(v, 2), "plain_seconds": round(p, 2), "ratio": round(v / p, 2), "goal_ratio_met": v / p <= GOAL_RATIO,
        "votes_tokens": round(statistics.fmean(r["tokens"] for r in votes), 1),
        "plain_tokens": round(statistics.fmean(r["tokens"] for r in plain), 1),
        "votes_acc": round(sum(r["correct"] for r in votes) / len(items), 3),
        "plain_acc": round(sum(r["correct"] for r in plain) / len(items), 3),
        "loadavg_start": round(load_start[0], 2), "loadavg_end": round(os.getloadavg()[0], 2),
    })


if __name__ == "__main__":
    main()
