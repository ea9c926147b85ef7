"""Scoring: only a clean run that ends with a finite number scores; crash, timeout, limits
and non-numbers score nothing but keep their verdict. Also the SPEC file format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.router.evolution.scoring import read_score, read_stage, scoring_request
from shared.contracts import EvolveSpec, ExecResult
from shared.errors import ConfigError
from shared.evolve.spec import load_spec
from tests.evolve.fakes import run_local

SCORER = "from candidate import f\nprint('diagnostics line')\nprint(f())\n"


def spec(**kw) -> EvolveSpec:
    kw.setdefault("limits", {"score_wall_s": 2})
    return EvolveSpec(task="return a big number", seed="def f():\n    return 1\n", scorer=SCORER, **kw)


@pytest.mark.parametrize(("result", "verdict"), [
    (ExecResult(status="runtime_error", exit_code=1, stderr="Traceback...\nValueError: boom"), "runtime_error"),
    (ExecResult(status="timeout", message="wall time limit"), "timeout"),
    (ExecResult(status="memory_limit", stderr="MemoryError"), "memory_limit"),
    (ExecResult(status="ok", exit_code=0, stdout="twelve\n"), "no_number"),
    (ExecResult(status="ok", exit_code=0, stdout=""), "no_number"),
    (ExecResult(status="ok", exit_code=0, stdout="1.5\nnan\n"), "no_number"),
    (ExecResult(status="ok", exit_code=0, stdout="inf\n"), "no_number"),
])
def test_failed_runs_earn_no_score(result: ExecResult, verdict: str) -> None:
    score, got, detail = read_score(result)
    assert score is None
    assert got == verdict
    assert detail


def test_last_number_line_is_the_score() -> None:
    score, verdict, detail = read_score(ExecResult(status="ok", exit_code=0, stdout="3 bins\n  -42.5  \n\n"))
    assert (score, verdict) == (-42.5, "ok")
    assert "3 bins" in detail


def test_a_json_last_line_carries_score_signature_fingerprint_and_metrics() -> None:
    out = 'instance 0: 7 bins\n{"score": -7.5, "signature": [7, 8], "fingerprint": "ab12", "metrics": {"excess_pct": 2.5}}\n'
    s = read_stage(ExecResult(status="ok", exit_code=0, stdout=out))
    assert (s.score, s.verdict, s.signature, s.fingerprint, s.metrics) == (-7.5, "ok", [7.0, 8.0], "ab12", {"excess_pct": 2.5})
    assert s.detail == "instance 0: 7 bins"  # the JSON line is machinery, not a diagnostic for the model
    for bad in ('{"signature": [1]}', '{"score": "high"}', '{"score": 1, "signature": [NaN]}', '{"score": 1'):
        got = read_stage(ExecResult(status="ok", exit_code=0, stdout=bad + "\n"))
        assert (got.score, got.verdict) == (None, "no_number"), bad


def test_the_stage_and_params_go_to_the_scorer_on_stdin() -> None:
    req = scoring_request(spec(params={"distribution": "or"}), "def f():\n    return 2\n", "evo-1", stage="quick")
    assert json.loads(req.stdin) == {"stage": "quick", "params": {"distribution": "or"}}


def test_the_candidate_is_importable_beside_the_scorer() -> None:
    req = scoring_request(spec(module="prog"), "def f():\n    return 2\n", "evo-1")
    assert req.code == SCORER
    assert [f.path for f in req.files] == ["prog.py"] and "return 2" in req.files[0].content
    assert req.limits.wall_s == 2 and req.limits.cpu_s == 2


@pytest.mark.parametrize(("body", "score", "verdict"), [
    ("return 7", 7.0, "ok"),
    ("raise ValueError('boom')", None, "runtime_error"),
    ("return 'many'", None, "no_number"),
    ("while True:\n        pass", None, "timeout"),
])
async def test_real_scoring_runs(body: str, score: float | None, verdict: str) -> None:
    s = spec(limits={"score_wall_s": 1})
    result = await run_local(scoring_request(s, f"def f():\n    {body}\n", "evo-1"), timeout_s=1)
    got_score, got_verdict, detail = read_score(result)
    assert (got_score, got_verdict) == (score, verdict)
    if verdict == "runtime_error":
        assert "ValueError: boom" in detail


def test_spec_file_with_program_files_and_inline_code(tmp_path: Path) -> None:
    (tmp_path / "seed.py").write_text("def f():\n    return 1\n")
    (tmp_path / "spec.toml").write_text(
        'task = "make f bigger"\ngenerations = 5\n[seed]\nfile = "seed.py"\n'
        '[scorer]\ncode = """from candidate import f\nprint(f())\n"""\n[limits]\nscore_wall_s = 3\n'
    )
    s = load_spec(tmp_path / "spec.toml")
    assert s.name == "spec" and s.generations == 5 and s.population == 4
    assert s.seed.startswith("def f") and "print(f())" in s.scorer
    assert s.limits.score_wall_s == 3


@pytest.mark.parametrize("text", [
    'task = "x"\nseed = "def f(): pass"\n',  # no scorer
    'task = "x"\nseed = "s"\nscorer = "c"\npopulation = 0\n',  # out of range
    'task = "x"\nscorer = "c"\n[seed]\nfile = "missing.py"\n',  # unreadable file
    'task = "x"\nscorer = "c"\n[seed]\nfile = "a.py"\ncode = "b"\n',  # both
    'task = "x"\nseed = "s"\nscorer = "c"\nsurprise = 1\n',  # unknown key
    'task = ',  # not TOML
])
def test_bad_spec_files_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "spec.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_spec(tmp_path / "spec.toml")


def test_shipped_examples_load() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "evolve"
    specs = sorted(root.glob("*/spec.toml"))
    assert len(specs) >= 2
    for path in specs:
        s = load_spec(path)
        assert s.seed.strip() and s.scorer.strip()
