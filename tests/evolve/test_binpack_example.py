"""The shipped FunSearch bin-packing benchmark (examples/evolve/binpack-*): its scorer runs
in the box's interpreter (numpy from the install step), best fit beats first fit, a bad
priority earns a clear error, and every stage answers with the JSON the engine reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.router.evolution.scoring import read_stage, scoring_request
from shared.contracts import ExecResult
from shared.evolve.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "evolve"
BOX_PYTHON = "/usr/bin/python3"  # code-sandbox's interpreter (services/code_sandbox/settings.py)


def run_in_box_python(spec_path: Path, code: str, stage: str, tmp: Path) -> ExecResult:
    spec = load_spec(spec_path)
    req = scoring_request(spec, code, "evo-test", stage)
    (tmp / "candidate.py").write_text(req.files[0].content)
    (tmp / "main.py").write_text(req.code)
    proc = subprocess.run([BOX_PYTHON, "main.py"], cwd=tmp, input=req.stdin, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    return ExecResult(status="ok", exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def test_the_box_interpreter_has_numpy() -> None:
    out = subprocess.run([BOX_PYTHON, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    assert out.returncode == 0, f"{BOX_PYTHON} lacks numpy: run infra/scripts/install-system-deps.sh ({out.stderr[-300:]})"


def test_best_fit_beats_first_fit_on_the_or_quick_instance(tmp_path: Path) -> None:
    spec_path = EXAMPLES / "binpack-or" / "spec.toml"
    spec = load_spec(spec_path)
    best = read_stage(run_in_box_python(spec_path, spec.seed, "quick", tmp_path))
    first = read_stage(run_in_box_python(spec_path, spec.baselines["first_fit"], "quick", tmp_path))
    assert best.verdict == first.verdict == "ok"
    assert best.score is not None and first.score is not None and best.score >= first.score
    assert best.signature == [-best.score] and len(best.fingerprint) == 16 and best.fingerprint != first.fingerprint
    assert best.metrics["excess_pct"] > 0 and best.metrics["l1_bound"] < best.metrics["bins"]
    assert spec.function == "priority" and spec.cascade.metric == "excess_pct"


@pytest.mark.parametrize(("body", "message"), [
    ("return 1.0", "must return one number per bin"),
    ("return bins * np.nan", "returned NaN"),
])
def test_a_bad_priority_fails_with_a_clear_message(tmp_path: Path, body: str, message: str) -> None:
    spec_path = EXAMPLES / "binpack-or" / "spec.toml"
    code = f"import numpy as np\n\n\ndef priority(item, bins):\n    {body}\n"
    res = run_in_box_python(spec_path, code, "quick", tmp_path)
    assert res.exit_code != 0 and message in res.stderr


def test_the_weibull_spec_is_funsearchs_setting() -> None:
    spec = load_spec(EXAMPLES / "binpack-weibull" / "spec.toml")
    assert spec.params == {"distribution": "weibull"} and spec.cascade.stages == ["quick", "train"]
    assert (spec.cascade.validation, spec.cascade.test) == ("validation", "test")
    assert "return -(bins - item)" in spec.seed and set(spec.baselines) == {"best_fit", "first_fit"}
    assert json.loads(scoring_request(spec, spec.seed, "r", "test").stdin)["stage"] == "test"
