"""What bench/evolve_peer.py hands OpenEvolve: an evaluator that compiles, scores best fit
with our own scorer (stage 1: the quick instance) and records why a candidate failed, and
a system message holding the spec's task and hints (our prompts carry both)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from shared.evolve.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "examples" / "evolve" / "binpack-weibull" / "spec.toml"
BOX_PYTHON = "/usr/bin/python3"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def peer() -> ModuleType:
    sys.path.insert(0, str(REPO / "bench"))  # the bench's own helpers (_common, _evolve)
    try:
        return load(REPO / "bench" / "evolve_peer.py", "evolve_peer")
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_the_system_message_holds_the_task_and_every_hint(peer: ModuleType) -> None:
    spec = load_spec(SPEC)
    text = peer.system_message(spec.task, spec.hints)
    assert text.startswith(peer.OPENEVOLVE_SYSTEM) and "Only the order of the priorities matters" in text
    assert spec.hints and all(f"- {h}" in text for h in spec.hints)
    assert "Ideas" not in peer.system_message(spec.task, [])


def test_the_evaluator_scores_best_fit_and_records_a_failure(peer: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("openevolve.evaluation_result")
    spec = load_spec(SPEC)
    (tmp_path / "evaluator.py").write_text(peer.EVALUATOR.format(scorer=spec.scorer, params=spec.params,
                                                                 python=BOX_PYTHON))
    evaluator = load(tmp_path / "evaluator.py", "peer_evaluator")
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(peer.initial_program(spec.seed, "priority"))
    bad.write_text("import numpy as np\n\n\ndef priority(item, bins):\n    return 0.0\n")

    ok = evaluator.evaluate_stage1(str(good))
    assert "error" not in ok.metrics and 0.9 < ok.metrics["combined_score"] < 1.0  # L1 bound / bins
    failed = evaluator.evaluate_stage1(str(bad))
    assert failed.metrics == {"combined_score": 0.0, "error": 1.0}
    logged = [json.loads(ln) for ln in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert logged == [{"stage": "quick", "error": logged[0]["error"]}]
    assert logged[0]["error"].startswith("priority(item, bins) must return one number per bin")
