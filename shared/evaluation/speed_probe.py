"""Speed and peak memory of one model, measured in a process of its own.

A fresh process per model, so the peak RSS (``VmHWM``) is that model's alone — weights
(mapped and, for repacked types, copied), its KV cache for ``n_ctx`` tokens, compute
buffers and the interpreter — and no model inherits another's warm state. Every model
runs at the same thread count. OpenMP's wait policy is the caller's ``OMP_WAIT_POLICY``,
else OpenMP's default, as the placement plan leaves it for an agent on cores of its own;
the result says which.

    python -m shared.evaluation.speed_probe MODEL.gguf --threads 2 [--n-ctx 4096] [--max-tokens 128]

prints one JSON object: prompt_tok_s, gen_tok_s, ttft_s (means over the built-in speed
prompts), peak_rss_bytes, threads, omp_wait_policy, loadavg (1 min, at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.errors import EngineError


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure(path: Path, threads: int, n_ctx: int, max_tokens: int) -> dict[str, Any]:
    """Load the model, warm it up, run every built-in speed prompt; report means and peak RSS."""
    from shared.evaluation.models import ModelRef
    from shared.evaluation.scoring import LlamaScorer
    from shared.evaluation.suites import SPEED_PROMPTS

    scorer = LlamaScorer(ModelRef(label=path.stem, path=path), threads=threads, n_ctx=n_ctx)
    try:
        scorer.speed("warm up", max_tokens=4, pp_tokens=16)  # the first decode pays one-time setup
        rows = [scorer.speed(str(p["prompt"]), max_tokens=max_tokens) for p in SPEED_PROMPTS]
    finally:
        scorer.close()
    out: dict[str, Any] = {k: sum(r[k] for r in rows) / len(rows) for k in ("prompt_tok_s", "gen_tok_s", "ttft_s")}
    return out | {"peak_rss_bytes": peak_rss_bytes(), "threads": threads, "n_ctx": n_ctx, "max_tokens": max_tokens,
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "loadavg": os.getloadavg()[0]}


def run_probe(path: Path, *, threads: int, n_ctx: int = 4096, max_tokens: int = 128,
              timeout_s: float = 3600.0) -> dict[str, Any]:
    """``measure`` in a child process (the caller's environment); EngineError when it fails."""
    cmd = [sys.executable, "-m", "shared.evaluation.speed_probe", str(path), "--threads", str(threads),
           "--n-ctx", str(n_ctx), "--max-tokens", str(max_tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EngineError(f"speed probe of {path.name} failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    return dict(json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.evaluation.speed_probe", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.threads, args.n_ctx, args.max_tokens)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
