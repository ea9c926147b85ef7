"""A code task through `make run`'s stack vs the same model answering the same prompt once
in plain llama-cpp-python, on the same cores and threads, in one run.

- stack arm: `syndicate up --detach` (its own state folder and ports, every service, the
  roster's models, placement as `make run` does it), then each task submitted as `make
  run` submits its demo (`syndicate submit --kind code TASK --json`), wall seconds as the
  user waits for them; the first task is `make run`'s demo (is_prime), right after `up`.
- plain arm, after the stack is down: a user's plain chat answer (the task as the one user
  message, the binding's defaults, explanation included) from `llama_cpp.Llama` in its own
  process (bench/_baseline.py), pinned to the cores the stack gave coder-agent, with its
  thread count.

Goal: mean stack ÷ mean plain ≤ 1.5; the demo done in well under half of 47.7 s (its
`make run` time before issue 25). Last line: one JSON object.

    flock /work/wt/heavy.lock python bench/stack_vs_plain.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _baseline import PlainLlama  # noqa: E402
from _common import emit  # noqa: E402

DEMO = "Write a Python function is_prime(n) that returns True when the integer n is a prime number and False otherwise."
TASKS = [
    DEMO,
    "Write a Python function reverse_words(s) that returns the words of the sentence s in reverse order, "
    "separated by single spaces.",
    "Write a Python function count_vowels(s) that counts the vowels (a, e, i, o, u, in either case) in the string s.",
]
GOAL_RATIO = 1.5
DEMO_BEFORE_S = 47.7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PinnedPlain(PlainLlama):
    """The peer's process, started under ``taskset`` on the given cores."""

    def __init__(self, model: Path, *, threads: int, cpus: list[int]) -> None:
        super().__init__(model, threads=threads)
        self._cmd = ["taskset", "-c", ",".join(map(str, cpus)), *self._cmd]


def stack_arm(tasks: list[str], env: dict[str, str]) -> tuple[list[dict], dict]:
    def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "syndicate.cli", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    up = cli("up", "--detach", "--port", str(free_port()), "--wait", "900")
    if up.returncode != 0:
        raise RuntimeError(f"syndicate up failed:\n{up.stdout}\n{up.stderr}")
    try:
        status = json.loads(cli("status", "--json").stdout)
        coder = next(r for r in status["services"] if r["service"] == "coder-agent")
        rows = []
        for task in tasks:
            t0 = time.monotonic()
            out = cli("submit", "--kind", "code", task, "--json")
            wall = time.monotonic() - t0
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"task": task[:50], "seconds": round(wall, 2), "status": result["status"],
                         "unverified": result.get("unverified", False), "candidates": len(result.get("attempts", [])),
                         "output_tokens": result["usage"]["output_tokens"], "input_tokens": result["usage"]["input_tokens"],
                         "sentence": result["answer"].split("```\n\n", 1)[-1].split("\n\n")[0][:300]})
            print(rows[-1], flush=True)
        return rows, {"cpus": coder["cpus"], "threads": coder["threads"], "model": coder["model"]}
    finally:
        cli("down", timeout=120)


def plain_arm(tasks: list[str], model: Path, cpus: list[int], threads: int, max_tokens: int) -> list[dict]:
    rows = []
    with PinnedPlain(model, threads=threads, cpus=cpus) as peer:
        for task in tasks:
            t0 = time.monotonic()
            r = peer.generate([{"role": "user", "content": task}], max_tokens=max_tokens)
            rows.append({"task": task[:50], "seconds": round(time.monotonic() - t0, 2), "tokens": r["tokens"]})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill takes the stack down too
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=1024, help="the plain answer's cap (it stops on its own first)")
    args = ap.parse_args()
    from shared.llm.roster import load_roster

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as state:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_ENGINE_SCRIPT")}
        env.update({"SYNDICATE_STATE_DIR": state, "SYNDICATE_GATEWAY_PORT": str(free_port()), "PYTHONPATH": str(REPO)})
        env.pop("SYNDICATE_NATS_URL", None)
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        stack, coder = stack_arm(TASKS, env)
    model = load_roster().role("coder").path
    plain = plain_arm(TASKS, model, coder["cpus"], coder["threads"] or 1, args.max_tokens)
    s_mean = statistics.fmean(r["seconds"] for r in stack)
    p_mean = statistics.fmean(r["seconds"] for r in plain)
    ratio = s_mean / p_mean
    emit({
        "bench": "stack_vs_plain", "model": coder["model"], "cpus": coder["cpus"], "threads": coder["threads"],
        "tasks": len(TASKS), "stack_seconds": [r["seconds"] for r in stack], "plain_seconds": [r["seconds"] for r in plain],
        "stack_status": [r["status"] + (" unverified" if r["unverified"] else "") for r in stack],
        "plain_tokens": [r["tokens"] for r in plain], "stack_output_tokens": [r["output_tokens"] for r in stack],
        "ratio": round(ratio, 2), "goal_ratio_met": ratio <= GOAL_RATIO,
        "demo_seconds": stack[0]["seconds"], "goal_demo_met": stack[0]["seconds"] < DEMO_BEFORE_S / 2,
        "loadavg_start": round(load_start[0], 2), "loadavg_end": round(os.getloadavg()[0], 2),
    })


if __name__ == "__main__":
    main()
