"""`syndicate eval study` end to end on tiny generated models: the ladder is made, every
phase runs (HumanEval programs in the real code-sandbox, GSM8K, perplexity/KLD, speed and
peak RSS in a process per model), the report has a row per model x quant and the plot;
speed is re-measured alone while quality comes from the cache; an interrupted study
resumes without redoing finished items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.evaluation.quantize import quantize_file
from shared.evaluation.study_report import pareto
from shared.llm.tiny import TinySpec, write_tiny_model
from tests.conftest import Services

pytestmark = pytest.mark.integration


def tiny_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two 'shipped' Q4_K_M models of one tokenizer (hidden 256 allows k-quants)."""
    out = []
    for name, layers in (("small", 2), ("large", 3)):
        src = write_tiny_model(tmp_path / f"{name}-F32.gguf", TinySpec(hidden=256, layers=layers, seed=layers, ftype="f32"))
        quantize_file(src, tmp_path / f"{name}-q4_k_m.gguf", "Q4_K_M", threads=1)
        out.append(tmp_path / f"{name}-q4_k_m.gguf")
    return out[0], out[1]


def test_study_end_to_end_on_tiny_models(services: Services, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    small, large = tiny_pair(tmp_path)
    services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
    services.wait_ready(["code-sandbox"])
    out = tmp_path / "study"
    args = ["eval", "study", "--small", str(small), "--large", str(large), "--limit", "2", "--max-tokens", "8",
            "--threads", "1", "--out", str(out)]
    env = {"SYNDICATE_QUANT_DIR": str(tmp_path / "quant")}
    r = services.cli(*args, timeout=900, **env)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [(x["model"], x["quant"]) for x in rows] == [
        ("small", "Q4_K_M"), ("small", "Q2_K"), ("large", "Q4_K_M"), ("large", "Q3_K_M"), ("large", "Q2_K")]
    assert [x["reference"] for x in rows] == [False, False, True, False, False]
    for x in rows:
        assert x["humaneval"]["n"] == 2 and x["gsm8k"]["n"] == 2 and x["text"]["n"] == 2
        assert x["speed"]["peak_rss_bytes"] > 10**6 and x["speed"]["gen_tok_s"] > 0 and x["speed"]["threads"] == 1
        assert x["size_bytes"] == Path(x["path"]).stat().st_size
    assert "kld_mean" in rows[3]["text"] and "kld_mean" in rows[0]["text"]  # same tokenizer: KLD for every row
    assert rows[1]["requantized_from"] == "Q4_K_M" and rows[0]["requantized_from"] is None
    assert (out / "tradeoff.png").stat().st_size > 10_000
    md = (out / "report.md").read_text()
    assert "large Q4_K_M (reference)" in md and "best source available offline" in md
    assert json.loads((out / "status.json").read_text())["status"] == "done"

    # Speed alone, in a "quiet window": quality is read back, not recomputed.
    before = {x["label"]: x for x in rows}
    r = services.cli(*args, "--only", "speed", "--fresh-speed", timeout=600, **env)
    assert r.returncode == 0, r.stderr[-3000:]
    again = {x["label"]: x for x in json.loads((out / "report.json").read_text())["rows"]}
    for label, x in again.items():
        assert x["humaneval"] == before[label]["humaneval"] and x["text"] == before[label]["text"]
        assert x["speed"]["measured_at"] > before[label]["speed"]["measured_at"]
    assert "== humaneval" not in r.stderr

    # An interrupted study (its phase results lost, item caches kept) resumes from the items.
    for p in (out / ".items").glob("phase-*.json"):
        p.unlink()
    r = services.cli(*args, "--only", "humaneval,gsm8k", timeout=600, **env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("(resumed: 2 cached)") == 10  # 5 models x 2 suites, nothing regenerated


def test_pareto_front_keeps_what_nothing_beats() -> None:
    # (tok/s, quality): the fast weak one and the slow strong one stay; a slower weaker one goes
    pts = [(30.0, 0.5), (10.0, 0.7), (9.0, 0.6), (30.0, 0.4), (20.0, 0.7)]
    assert pareto(pts) == [4, 0]
