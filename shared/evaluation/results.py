"""Run results: the per-item result cache (resume after an interrupt), the report models,
and the aggregation of per-item records into per-model metrics."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from shared.evaluation import metrics


class ItemCache:
    """Append-only JSONL of finished items, one file per (suite, model, options) key.

    Every finished item is flushed at once, so an interrupted run loses at most the item
    in flight; a torn last line (killed mid-write) is ignored on reload.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").split("\n"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    self.records[str(rec["id"])] = rec["result"]

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.records

    def put(self, item_id: str, result: dict[str, Any]) -> None:
        self.records[item_id] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": item_id, "result": result}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def cache_key(**parts: Any) -> str:
    """A stable short hash of what makes results reusable (suite, model file, options)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class ModelResult(BaseModel):
    label: str
    path: str = ""
    quant: str = "?"
    size_bytes: int = 0
    mode: str = "direct"  # direct | agents
    n: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    speed: dict[str, float] = Field(default_factory=dict)  # gen_tok_s, prompt_tok_s, ttft_s
    per_threads: list[dict[str, float]] = Field(default_factory=list)  # speed suite rows
    notes: list[str] = Field(default_factory=list)
    items: list[dict[str, Any]] = Field(default_factory=list)  # per-item records (report.json)


class SuiteResult(BaseModel):
    suite: str
    type: str
    source: str
    n_items: int
    primary: str  # the headline metric's key
    models: list[ModelResult] = Field(default_factory=list)
    executor: str | None = None  # code suites: where programs ran
    reference: str | None = None  # text suites: the KLD reference model
    options: dict[str, Any] = Field(default_factory=dict)
    started_at: float = Field(default_factory=time.time)
    finished_at: float = 0.0


PRIMARY = {"code": "pass@1", "qa": "accuracy", "choice": "accuracy", "text": "ppl", "speed": "gen_tok_s"}


# --- aggregation ------------------------------------------------------------------------------
def _gen_speed(recs: list[dict[str, Any]]) -> dict[str, float]:
    toks = sum(r.get("gen_tokens", 0) for r in recs)
    secs = sum(r.get("gen_seconds", 0.0) for r in recs)
    ttfts = [r["ttft_s"] for r in recs if r.get("ttft_s")]
    out = {"gen_tok_s": metrics.rate(toks, secs)}
    if ttfts:
        out["ttft_s"] = float(np.mean(ttfts))
    return out


def aggregate_code(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    counts = [(len(r["passed"]), sum(bool(p) for p in r["passed"])) for r in recs]
    m: dict[str, float] = {}
    if counts:
        n_min = min(n for n, _ in counts)
        for k in (1, 5, 10, 100):
            if k <= n_min:
                m[f"pass@{k}"] = metrics.mean_pass_at_k(counts, k)
        attempts = [r["attempts"] for r in recs if r.get("attempts")]
        if attempts:
            m["mean_attempts"] = float(np.mean(attempts))
        routed = [r for r in recs if "route" in r]
        if routed:
            m["routed_to_coder"] = float(np.mean(["coder" in r["route"] for r in routed]))
    return m, _gen_speed(recs)


def aggregate_qa(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    m = {"accuracy": float(np.mean([bool(r["correct"]) for r in recs]))} if recs else {}
    return m, _gen_speed(recs)


def aggregate_choice(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    if not recs:
        return {}, {}
    m = {"accuracy": float(np.mean([r["pred"] == r["gold"] for r in recs]))}
    if all("pred_norm" in r for r in recs):
        m["accuracy_norm"] = float(np.mean([r["pred_norm"] == r["gold"] for r in recs]))
    toks = sum(r.get("prompt_tokens", 0) for r in recs)
    secs = sum(r.get("seconds", 0.0) for r in recs)
    return m, ({"prompt_tok_s": metrics.rate(toks, secs)} if secs else _gen_speed(recs))


def aggregate_text(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    if not recs:
        return {}, {}
    nll = np.concatenate([np.asarray(r["nll"], dtype=np.float64) for r in recs])
    m = {"ppl": metrics.perplexity(nll), "ppl_stderr": metrics.perplexity_stderr(nll),
         "scored_tokens": float(nll.size)}
    with_kl = [r for r in recs if r.get("kl") is not None]
    if with_kl and len(with_kl) == len(recs):
        kls = np.concatenate([np.asarray(r["kl"], dtype=np.float64) for r in with_kl])
        same = np.concatenate([np.asarray(r["same"], dtype=bool) for r in with_kl])
        m.update(metrics.kld_summary(kls, same))
    toks = sum(r["tokens"] for r in recs)
    secs = sum(r["seconds"] for r in recs)
    # Not llama.cpp's prompt speed: includes copying every position's logits (logits_all).
    return m, {"score_tok_s": metrics.rate(toks, secs)}


def aggregate_speed(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float], list[dict[str, float]]]:
    by_threads: dict[int, list[dict[str, Any]]] = {}
    for r in recs:
        by_threads.setdefault(int(r["threads"]), []).append(r)
    rows = []
    for t in sorted(by_threads):
        rs = by_threads[t]
        rows.append({"threads": float(t), **{k: float(np.mean([r[k] for r in rs]))
                                            for k in ("prompt_tok_s", "gen_tok_s", "ttft_s")}})
    best = rows[-1] if rows else {}
    speed = {k: v for k, v in best.items() if k != "threads"}
    return dict(speed), speed, rows


AGGREGATORS = {"code": aggregate_code, "qa": aggregate_qa, "choice": aggregate_choice, "text": aggregate_text}


def running_score(kind: str, recs: list[dict[str, Any]]) -> str:
    """Short text for the progress bar."""
    if not recs:
        return ""
    if kind == "speed":
        m, _, _ = aggregate_speed(recs)
        return f"gen {m.get('gen_tok_s', 0):.1f} tok/s"
    m, _ = AGGREGATORS[kind](recs)
    key = PRIMARY[kind]
    return f"{key} {m[key]:.3f}" if key in m else ""
