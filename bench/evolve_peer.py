"""`syndicate evolve` vs OpenEvolve (PyPI ``openevolve``), side by side on FunSearch's
Weibull bin packing, the same model on the same llama.cpp serving, the same number of
LLM samples; both final programs judged on the same held-out test instances.

- **syndicate**: `syndicate evolve examples/evolve/binpack-weibull/spec.toml --samples N
  --model coder-agent` on a `make run` stack (only its coder-agent's model, the 1.5B by
  default — the spec's second model, the reasoner's 0.5B, is left out here).
- **OpenEvolve**: its own process (``openevolve-run``), its own default configuration
  except: the model endpoint (the stack's gateway serving the coder's model as an OpenAI
  model, ``/v1/chat/completions`` with model = the roster name), the budget
  (``max_iterations`` = N), the request timeout (its default 60 s is shorter than one
  CPU generation), the task text and the spec's hints as its system message (what its
  users write there), and full rewrites when ``--openevolve-diffs off`` (its users' fix
  when small models fail the diff format, issue #241). Its evaluator calls the same scorer as ours (a
  subprocess of the box's interpreter): stage 1 the quick instance, stage 2 the five
  training instances; ``combined_score`` = L1 bound / bins used (same order as ours).

Reported: test excess over the L1 bound (%) of both final programs and of best fit, and
samples and valid samples per hour of each (valid: the candidate ran and was scored).
Goal: syndicate's test excess lower than OpenEvolve's, and more valid samples per hour.
``--quick``: 3 samples each. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import emit
from _evolve import BOX_PYTHON, PY, REPO, SPECS, Stack, judge, uptime

from shared.evolve.spec import load_spec
from shared.llm.roster import load_roster

OPENEVOLVE_SYSTEM = (  # openevolve/prompts/defaults/system_message.txt, then the task as its users add it
    "You are an expert software developer tasked with iteratively improving a codebase.\n"
    "Your goal is to maximize the FITNESS SCORE while exploring diverse solutions across feature dimensions.\n"
    "The system maintains a collection of diverse programs - both high fitness AND diversity are valuable."
)

EVALUATOR = '''
"""OpenEvolve evaluator: the syndicate spec's own scorer in a subprocess (same as the judge)."""
import json, math, os, shutil, subprocess, tempfile
from openevolve.evaluation_result import EvaluationResult

SCORER = {scorer!r}
PARAMS = {params!r}
PYTHON = {python!r}
FAILURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "failures.jsonl")


def _run(program_path, stage):
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(program_path, os.path.join(tmp, "candidate.py"))
        with open(os.path.join(tmp, "main.py"), "w") as f:
            f.write(SCORER)
        try:
            proc = subprocess.run([PYTHON, "main.py"], cwd=tmp, capture_output=True, text=True, timeout=120,
                                  input=json.dumps({{"stage": stage, "params": PARAMS}}),
                                  env={{"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}})
        except subprocess.TimeoutExpired:
            return EvaluationResult(metrics={{"combined_score": 0.0, "error": 1.0}}, artifacts={{"stderr": "timeout"}})
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{{"):
        why = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        with open(FAILURES, "a") as f:  # for the bench's report: what OpenEvolve's candidates died of
            f.write(json.dumps({{"stage": stage, "error": why[-1][:200]}}) + "\\n")
        return EvaluationResult(metrics={{"combined_score": 0.0, "error": 1.0}},
                                artifacts={{"stderr": (proc.stderr or proc.stdout)[-2000:]}})
    m = json.loads(lines[-1])["metrics"]
    return EvaluationResult(metrics={{"combined_score": m["l1_bound"] / m["bins"], "bins": float(m["bins"]),
                                      "excess_pct": m["excess_pct"]}})


def evaluate_stage1(program_path):
    return _run(program_path, "quick")


def evaluate_stage2(program_path):
    return _run(program_path, "train")


def evaluate(program_path):
    return _run(program_path, "train")
'''


def system_message(task: str, hints: list[str]) -> str:
    """OpenEvolve's system message with what our prompts carry: the task, and the spec's
    hints as ideas (ours show one per prompt; OpenEvolve's users list them here)."""
    text = OPENEVOLVE_SYSTEM + "\n\n" + textwrap.dedent(task).strip()
    if hints:
        text += "\n\nIdeas to try:" + "".join(f"\n- {h}" for h in hints)
    return text


def initial_program(seed: str, function: str) -> str:
    """The seed with OpenEvolve's EVOLVE-BLOCK markers around the evolved function."""
    lines = seed.rstrip().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"def {function}("))
    return "\n".join(lines[:start] + ["# EVOLVE-BLOCK-START"] + lines[start:] + ["# EVOLVE-BLOCK-END"]) + "\n"


def openevolve_arm(stack: Stack, spec_path: Path, samples: int, seed: int, diffs: bool, model: str,
                   work: Path) -> dict[str, Any]:
    spec = load_spec(spec_path)
    work.mkdir(parents=True, exist_ok=True)
    (work / "initial_program.py").write_text(initial_program(spec.seed, spec.function or "priority"))
    (work / "evaluator.py").write_text(EVALUATOR.format(scorer=spec.scorer, params=spec.params, python=BOX_PYTHON))
    config = {
        "max_iterations": samples, "random_seed": seed, "diff_based_evolution": diffs,
        "llm": {"api_base": f"http://127.0.0.1:{stack.gateway_port}/v1", "api_key": "none",
                "models": [{"name": model, "weight": 1.0}], "timeout": 1800},
        "prompt": {"system_message": system_message(spec.task, spec.hints)},
    }
    (work / "config.yaml").write_text(json.dumps(config))  # YAML is a superset of JSON
    out_dir = work / "output"
    started = time.monotonic()
    proc = subprocess.run(
        [PY, "-m", "openevolve.cli", str(work / "initial_program.py"), str(work / "evaluator.py"),
         "--config", str(work / "config.yaml"), "--output", str(out_dir), "--iterations", str(samples)],
        cwd=work, capture_output=True, text=True, timeout=samples * 900 + 600,
    )
    wall = time.monotonic() - started
    logs = "\n".join(p.read_text(errors="replace") for p in sorted((out_dir / "logs").glob("*.log")))
    scores = [float(m) for m in re.findall(r"Metrics: combined_score=([0-9.]+)", logs)]
    errors = re.findall(r"Iteration \d+ error: (.*)", logs)
    valid = sum(s > 0 for s in scores)
    failures_path = work / "failures.jsonl"
    failed = [json.loads(ln)["error"] for ln in failures_path.read_text().splitlines()] if failures_path.exists() else []
    kinds = [f.split(":")[0][:80] for f in failed]  # "TypeError", "priority(item, bins) must return one number per bin"
    best_path = out_dir / "best" / "best_program.py"
    best = best_path.read_text() if best_path.exists() else None
    hours = wall / 3600
    return {
        "returncode": proc.returncode, "wall_s": round(wall, 1), "samples": len(scores) + len(errors),
        "valid": valid, "valid_fraction": round(valid / max(1, len(scores) + len(errors)), 4),
        "samples_per_hour": round((len(scores) + len(errors)) / hours, 1), "valid_per_hour": round(valid / hours, 1),
        "errors": {e[:60]: errors.count(e) for e in set(errors)}, "best_program": best,
        "evaluation_failures": dict(sorted(Counter(kinds).items())),
        "best_train_ratio": max(scores, default=None), "stderr_tail": proc.stderr[-1500:] if proc.returncode else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--openevolve-diffs", choices=["on", "off"], default="off",
                    help="OpenEvolve's default is diffs (on); off = full rewrites (its users' fix for small models)")
    ap.add_argument("--order", default="openevolve,syndicate")
    ap.add_argument("--arms-per-run", type=int, default=2,
                    help="arms to run now (1: one per invocation, to keep each hold of the machine short)")
    ap.add_argument("--results", type=Path, default=None,
                    help="arms done so far (default .syndicate/bench/evolve_peer/<samples>-<seed>-<diffs>.json): "
                         "a rerun runs only the missing arms")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples = 3
    spec_path = SPECS["weibull"]
    model = load_roster(str(REPO / "infra/models.toml")).role("coder").model_id
    path = args.results or REPO / ".syndicate/bench/evolve_peer" / f"{args.samples}-{args.seed}-{args.openevolve_diffs}.json"
    if args.quick:
        path = Path(tempfile.mkdtemp()) / "quick.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {
        "bench": "evolve_peer", "samples": args.samples, "model": model, "seed": args.seed,
        "openevolve_diffs": args.openevolve_diffs}
    todo = [a for a in args.order.split(",") if a not in result][: args.arms_per_run]
    with tempfile.TemporaryDirectory(prefix="evolve-peer-") as tmp:
        stack = Stack(Path(tmp))
        if todo:
            stack.up()
        try:
            for arm in todo:
                result[f"uptime_{arm}_start"] = uptime()
                if arm == "openevolve":
                    oe = openevolve_arm(stack, spec_path, args.samples, args.seed, args.openevolve_diffs == "on",
                                        model, Path(tmp) / "openevolve")
                    test = judge(oe["best_program"], spec_path) if oe["best_program"] else {}
                    result["openevolve"] = {**{k: v for k, v in oe.items() if k != "best_program"},
                                            "test_excess_pct": test.get("excess_pct"), "best_program": oe["best_program"]}
                elif arm == "syndicate":
                    # The same model as OpenEvolve's: the coder-agent copies' (the spec's second model,
                    # the reasoner's 0.5B, is left out).
                    ours = stack.evolve(spec_path, "--samples", str(args.samples), "--seed", str(args.seed),
                                        "--model", "coder-agent")
                    result["syndicate"] = {k: ours.get(k) for k in (
                        "status", "samples", "valid", "valid_fraction", "minutes", "samples_per_hour", "valid_per_hour",
                        "test_excess_pct", "best_fit_excess_pct", "first_fit_excess_pct", "verdicts", "best_program")}
                result[f"uptime_{arm}_end"] = uptime()
                path.write_text(json.dumps(result, indent=1))
                print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "best_program"} if isinstance(v, dict) else v
                                  for k, v in result.items()}), flush=True)
        finally:
            if todo:
                stack.down()
    base = judge(load_spec(spec_path).seed, spec_path)
    result["best_fit_excess_pct"] = base.get("excess_pct")
    ours, peer = result.get("syndicate", {}), result.get("openevolve", {})
    if ours.get("test_excess_pct") is not None and peer.get("test_excess_pct") is not None:
        result["lower_test_excess_than_openevolve"] = ours["test_excess_pct"] < peer["test_excess_pct"]
    if ours.get("valid_per_hour") is not None and peer.get("valid_per_hour") is not None:
        # None when OpenEvolve scored nothing valid: a ratio to zero says nothing more
        result["valid_per_hour_ratio"] = (round(ours["valid_per_hour"] / peer["valid_per_hour"], 2)
                                          if peer["valid_per_hour"] else None)
    emit({k: {kk: vv for kk, vv in v.items() if kk != "best_program"} if isinstance(v, dict) else v
          for k, v in result.items()})


if __name__ == "__main__":
    main()
