"""Pinning happens before the model loads and covers every thread, in a child process
(the pytest process itself must keep all its cpus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, os, sys
from shared.llm.factory import load_engine
from shared.llm.base import GenerationRequest

eng = load_engine("coder")
before_threads = eng.stats()["threads"]
r = asyncio.run(eng.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)))
tasks = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"cpus": eng.stats()["cpus"], "threads": before_threads, "tasks": tasks,
                  "omp": os.environ.get("OMP_WAIT_POLICY"), "tokens": r.output_tokens,
                  "type": type(eng).__name__}))
"""


def run_child(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATE_", "OMP_"))}
    env.update({"PYTHONPATH": str(REPO), **env_extra})
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engine_pins_every_thread_to_its_cpus(tiny_model: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    res = run_child({"SYNDICATE_MODEL_PATH": str(tiny_model), "SYNDICATE_CPUS": str(cpu)})
    assert res["type"] == "LlamaEngine"
    assert res["cpus"] == [cpu]
    assert res["threads"] == 1
    assert res["tokens"] == 8
    # the main thread, the worker thread and llama.cpp's compute threads: all pinned
    assert len(res["tasks"]) >= 2
    assert all(cpus == [cpu] for cpus in res["tasks"].values()), res["tasks"]
    # The engine sets no wait policy: PASSIVE would sleep at every barrier on exclusive cores.
    assert res["omp"] is None


def test_unset_cpus_means_every_allowed_cpu(tiny_model: Path) -> None:
    res = run_child({"SYNDICATE_MODEL_PATH": str(tiny_model)})
    allowed = sorted(os.sched_getaffinity(0))
    assert res["cpus"] == allowed
    assert res["threads"] == len(allowed)


def test_explicit_omp_policy_is_respected(tiny_model: Path) -> None:
    res = run_child({"SYNDICATE_MODEL_PATH": str(tiny_model), "OMP_WAIT_POLICY": "ACTIVE"})
    assert res["omp"] == "ACTIVE"


def test_the_plans_thread_count_wins_over_the_cpu_count(tiny_model: Path) -> None:
    """SMT: the plan owns both siblings of a core but runs one thread per physical core."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        import pytest

        pytest.skip("needs two cpus")
    res = run_child({"SYNDICATE_MODEL_PATH": str(tiny_model), "SYNDICATE_CPUS": f"{allowed[0]},{allowed[1]}",
                     "OMP_NUM_THREADS": "1"})
    assert res["cpus"] == allowed[:2]
    assert res["threads"] == 1
