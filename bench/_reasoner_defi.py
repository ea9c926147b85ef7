"""Collection arms of bench/reasoner_quality.py: the reasoner's Answerer over the
retriever's own index of a collection, scored against labelled questions.

- ``defi``: prose, examples/defi-notes, questions in examples/defi-notes-questions.json;
- ``code``: code, five modules of the running Python's standard library (textwrap, shlex,
  fnmatch, heapq, bisect), questions in bench/data/code_questions.json, whose sources are
  named by module and function and resolved to lines here (any Python version works).

- correct: an answerable question answered (not "nothing relevant") stating every
  required fact (each fact: any of its phrasings, case- and whitespace-insensitive);
- citation precision: citations (over all questions) whose lines overlap a labelled
  passage of their question; a citation on an off-corpus question is always wrong;
- citation recall: per answerable question, the share of its labelled passages that some
  citation overlaps, averaged;
- nothing-relevant rate: off-corpus questions answered "nothing relevant" with no citation
  (and, as the price of it, the rate of answerable questions refused).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._reasoner_gsm8k import read_jsonl  # noqa: E402

QUESTIONS = REPO / "examples" / "defi-notes-questions.json"
CODE_QUESTIONS = REPO / "bench" / "data" / "code_questions.json"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("`", "").replace("\\", ""))


def states(answer: str, fact: list[str]) -> bool:
    """True when the answer states the fact in one of its accepted phrasings."""
    a = _norm(answer)
    return any(_norm(p) in a or _norm(p).replace(" ", "") in a.replace(" ", "") for p in fact)


def overlaps(c: dict, s: dict) -> bool:
    return c["path"] == s["path"] and c["start_line"] <= s["end_line"] and s["start_line"] <= c["end_line"]


def score(recs: list[dict]) -> dict:
    """The arm's figures from per-question records."""
    ans = [r for r in recs if r["kind"] == "answerable"]
    off = [r for r in recs if r["kind"] == "off_corpus"]
    cites = [(c, r) for r in recs for c in r["citations"]]
    good = sum(1 for c, r in cites if any(overlaps(c, s) for s in r.get("sources", [])))
    recall = [sum(any(overlaps(c, s) for c in r["citations"]) for s in r["sources"]) / len(r["sources"]) for r in ans]
    return {
        "answerable": len(ans), "off_corpus": len(off),
        "answer_correct": round(sum(r["correct"] for r in ans) / max(1, len(ans)), 3),
        "citation_precision": round(good / len(cites), 3) if cites else 0.0,
        "citation_recall": round(sum(recall) / max(1, len(recall)), 3),
        "citations": len(cites),
        "nothing_relevant_rate": round(sum(r["nothing_relevant"] and not r["citations"] for r in off) / max(1, len(off)), 3),
        "refused_answerable_rate": round(sum(r["nothing_relevant"] for r in ans) / max(1, len(ans)), 3),
        "seconds_per_question": round(sum(r["seconds"] for r in recs) / max(1, len(recs)), 2),
    }


def defi_spec() -> tuple[list[Path], dict]:
    doc = json.loads(QUESTIONS.read_text())
    return [Path(doc["collection_root"])], doc


def code_spec() -> tuple[list[Path], dict]:
    """The modules' files, and the questions with each source resolved to the lines of its def."""
    import ast
    import importlib

    doc = json.loads(CODE_QUESTIONS.read_text())
    files = {m: Path(importlib.import_module(m).__file__ or "").resolve() for m in doc["modules"]}
    spans: dict[tuple[str, str], dict] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                spans[(module, node.name)] = {"path": str(path), "start_line": node.lineno, "end_line": node.end_lineno}
    for q in doc["answerable"]:
        q["sources"] = [spans[(s["module"], s["def"])] for s in q["sources"] if (s["module"], s["def"]) in spans]
    return list(files.values()), doc


SPECS = {"defi": defi_spec, "code": code_spec}


async def run_defi(engine, out: Path) -> dict:  # type: ignore[no-untyped-def]
    return await run_collection(engine, out, "defi")


async def run_collection(engine, out: Path, name: str) -> dict:  # type: ignore[no-untyped-def]
    """Ingest the collection into a temporary index, answer every labelled question, score."""
    from services.reasoner_agent.answerer import Answerer
    from services.reasoner_agent.settings import ReasonerSettings
    from services.retriever.embedding import load_embedder
    from services.retriever.index import DocumentIndex
    from services.retriever.store_edge import EdgeStore
    from shared.contracts import AgentJob, IngestRequest, SearchReply, SearchRequest
    from shared.ingest_files import plan_ingest

    roots, doc = SPECS[name]()
    todo = [("answerable", q) for q in doc["answerable"]] + [("off_corpus", q) for q in doc["off_corpus"]]
    done = {r["question"]: r for r in read_jsonl(out)}
    os.chdir(REPO)  # stored paths are relative to the repository, as `syndicate ingest` run there stores them
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Path(tmp))
        index = DocumentIndex(store, load_embedder("minilm", threads=1))
        for batch in plan_ingest(roots).batches:
            index.ingest(IngestRequest(collection=name, documents=batch))
        index.optimize_idle(idle_s=0)
        hits_seen: dict[str, list] = {}

        async def search(req: SearchRequest) -> SearchReply:
            reply = await asyncio.to_thread(index.search, req)
            hits_seen[req.query] = [(h.path.rsplit("/", 1)[-1], h.start_line, round(h.score, 3)) for h in reply.hits]
            return reply

        raw: dict[str, str] = {}  # the model's own text per task, kept to study grounding offline

        class Recording:
            name = engine.name

            async def generate(self, req, on_token=None):  # type: ignore[no-untyped-def]
                res = await engine.generate(req, on_token)
                raw[req.request_id] = res.text
                return res

            def cancel(self, request_id: str) -> bool:
                return engine.cancel(request_id)

            def stats(self) -> dict:
                return engine.stats()

        answerer = Answerer(Recording(), search, ReasonerSettings())  # type: ignore[arg-type]
        for k, (kind, q) in enumerate(todo, 1):
            if q["question"] in done:
                continue
            job = AgentJob(task_id=f"{name}-{k}", step_id=f"{name}-{k}.1", agent="reasoner", text=q["question"],
                           collection=name, deadline=time.time() + 3600)
            t = time.perf_counter()
            res = await answerer.answer(job)
            if res.status != "done":
                raise RuntimeError(f"{q['question']}: {res.status} {res.error}")
            rec = {"question": q["question"], "kind": kind, "sources": q.get("sources", []),
                   "answer": res.answer, "raw": raw.pop(job.task_id, None), "citations": [c.model_dump() for c in res.citations],
                   "hits": hits_seen.get(q["question"], []),
                   "nothing_relevant": "nothing relevant" in res.answer,
                   "correct": kind == "answerable" and "nothing relevant" not in res.answer
                   and all(states(res.answer, f) for f in q["facts"]),
                   "seconds": round(time.perf_counter() - t, 2)}
            with out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            done[q["question"]] = rec
            print(f"[{name} {k}/{len(todo)}] {kind} correct={rec['correct']} nothing={rec['nothing_relevant']} "
                  f"cites={[(c['path'].rsplit('/', 1)[-1], c['start_line']) for c in rec['citations']]}",
                  file=sys.stderr, flush=True)
        store.close()
    return score([done[q["question"]] for _, q in todo])
