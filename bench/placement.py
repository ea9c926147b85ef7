"""Two agents sharing this machine: the syndicate's placement vs the naive setup.

- placement: each agent process pinned (sched_setaffinity before the model loads) to the
  cores the planner gives it, threads = physical cores owned, the plan's OMP variables.
- naive: each process unpinned with threads = all cpus and OpenMP defaults, what a user
  chasing speed configures. On 2 cores this collapses (spinning OpenMP threads fight).
- alone: each agent by itself on its planned cores: the ideal the pair should reach.

Prints ``ratio`` = placement aggregate tok/s / naive aggregate (goal >= 50) and
``fraction_of_ideal`` = placement aggregate / sum of the alone rates (goal >= 0.95), one
JSON object on the last line. Every run is bounded by tokens and by seconds.

    python bench/placement.py [--model PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROLES = ("coder", "reasoner")  # two agents of equal weight, from the default roles
PROMPT = "def fibonacci(n):\n    "
# Variables that would change OpenMP's behaviour: the naive run starts without them.
OMP_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_SPINCOUNT")
MODEL_PATTERNS = ("*gemma-3-270m*.gguf", "*qwen2.5-coder-0.5b*.gguf", "*SmolLM2-135M*.gguf")


def find_model() -> Path | None:
    """The first cached real model (gemma-3-270m, Qwen2.5-Coder-0.5B, SmolLM2-135M)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syndicate" / "models"
    for pattern in MODEL_PATTERNS:
        found = sorted(cache.glob(pattern))
        if found:
            return found[0]
    return None


# ---- child: one agent process -------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Load the model (pinned first if asked), say READY, wait for GO, generate, report."""
    if args.cpus:
        from shared.settings import parse_cpus

        os.sched_setaffinity(0, parse_cpus(args.cpus))  # before llama.cpp starts threads
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=args.tokens + 64,
        verbose=False,
    )
    prompt = llm.tokenize(PROMPT.encode())
    print("READY", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    stamps: list[float] = []
    # Greedy and never stopping at EOS: every run produces the same token count.
    for _ in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) >= args.tokens or stamps[-1] - start > args.max_seconds:
            break
    if len(stamps) >= 2:
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    else:  # collapsed so far that not even two tokens came: an upper bound
        rate = len(stamps) / (time.perf_counter() - start)
    print(
        json.dumps(
            {
                "tokens": len(stamps),
                "tok_s": rate,
                "first_token_s": stamps[0] - start if stamps else None,
                "seconds": time.perf_counter() - start,
                "affinity": sorted(os.sched_getaffinity(0)),
            }
        ),
        flush=True,
    )


# ---- parent: run agents side by side ------------------------------------------------


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of this machine's cpu time that was busy over ``seconds`` (from /proc/stat):
    the outside load our runs compete with (other users of the machine)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def run_group(model: Path, agents: list[dict], tokens: int, max_seconds: float) -> list[dict]:
    """Start every agent, wait until all loaded, release them together, collect rates."""
    # llama.cpp's chatter goes to a file, shown only when a process fails to load.
    with tempfile.TemporaryFile(mode="w+") as log:
        procs = []
        try:
            for a in agents:
                env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
                env.update(a["env"])
                cmd = [sys.executable, __file__, "--child", "--model", str(model)]
                cmd += ["--threads", str(a["threads"]), "--tokens", str(tokens)]
                cmd += ["--max-seconds", str(max_seconds), "--cpus", a.get("cpus", "")]
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
            for p in procs:
                if p.stdout.readline().strip() != "READY":
                    log.seek(0)
                    raise RuntimeError(f"agent failed to load {model}:\n{log.read()[-2000:]}")
            for p in procs:  # release all together
                p.stdin.write("go\n")
                p.stdin.flush()
            results = []
            for p in procs:
                out, _ = p.communicate(timeout=max_seconds + 60)
                results.append(json.loads(out.strip().splitlines()[-1]))
            return results
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", type=Path, default=None, help="GGUF model (default: cached real model)"
    )
    ap.add_argument("--quick", action="store_true", help="fewer tokens, one round")
    ap.add_argument("--sysfs", default="/", help="sysfs root for the plan (default: this machine)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--max-seconds", type=float, default=20.0, help=argparse.SUPPRESS)
    ap.add_argument("--cpus", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.model = str(args.model)
        child(args)
        return

    from shared.topology import default_roles, discover, plan_placement

    model = args.model or find_model()
    if model is None or not Path(model).is_file():
        sys.exit(
            "no model: pass --model PATH or cache one under ~/.cache/syndicate/models "
            "(gemma-3-270m, Qwen2.5-Coder-0.5B or SmolLM2-135M GGUF)"
        )
    topo = discover(args.sysfs)
    roles = {r: s for r, s in default_roles().items() if r in ROLES}
    plan = plan_placement(topo, roles)
    placed = [
        {"role": r, "cpus": a.env["SYNDICATE_CPUS"], "threads": a.threads, "env": a.env}
        for r, a in plan.agents.items()
    ]
    naive = [{"role": r, "threads": os.cpu_count() or 1, "env": {}} for r in plan.agents]

    tokens, rounds = (48, 1) if args.quick else (128, 2)
    naive_seconds = 12.0 if args.quick else 25.0
    outside_busy = busy_fraction()
    alone: dict[str, list[float]] = {a["role"]: [] for a in placed}
    together: dict[str, list[float]] = {a["role"]: [] for a in placed}
    naive_rates: dict[str, list[float]] = {a["role"]: [] for a in naive}
    for _ in range(rounds):
        for a in placed:
            alone[a["role"]].append(run_group(model, [a], tokens, 60)[0]["tok_s"])
        for a, res in zip(placed, run_group(model, placed, tokens, 60), strict=True):
            together[a["role"]].append(res["tok_s"])
    # The collapse is slow by nature: one bounded round is enough to show it.
    for a, res in zip(naive, run_group(model, naive, tokens, naive_seconds), strict=True):
        naive_rates[a["role"]].append(res["tok_s"])

    def med(d: dict[str, list[float]]) -> dict[str, float]:
        return {k: round(statistics.median(v), 3) for k, v in d.items()}

    alone_m, together_m, naive_m = med(alone), med(together), med(naive_rates)
    agg_placed, agg_naive = sum(together_m.values()), sum(naive_m.values())
    ideal = sum(alone_m.values())
    print(
        json.dumps(
            {
                "bench": "placement",
                "model": Path(model).name,
                "cpus": len(topo.cpus),
                "cores": len(topo.cores),
                "plan": {a["role"]: {"cpus": a["cpus"], "threads": a["threads"]} for a in placed},
                "naive_threads": naive[0]["threads"],
                "tokens": tokens,
                "rounds": rounds,
                "alone_tok_s": alone_m,
                "placement_tok_s": together_m,
                "naive_tok_s": naive_m,
                "placement_aggregate": round(agg_placed, 3),
                "naive_aggregate": round(agg_naive, 3),
                "ratio": round(agg_placed / agg_naive, 2) if agg_naive else None,
                "fraction_of_ideal": round(agg_placed / ideal, 3) if ideal else None,
                "goal_ratio": 50,
                "goal_fraction_of_ideal": 0.95,
                # Busy share of all cpus just before the runs: other users of the machine.
                "outside_busy_before": round(outside_busy, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
