"""The bandwidth side of the roofline: how fast an agent's cores stream weights.

Generating one token reads every weight once, so a dense model's generation rate is at
best ``bandwidth / bytes per token``. On a big server that bound is DRAM bandwidth (give
it with ``--bandwidth``: the whole machine's, shared by the agents in proportion to their
cores). Here the measured bound is what llama.cpp's own decode kernels reach, by type:
``probe()`` decodes with a synthetic model of each weight type, larger than the L3 cache,
on the agent's cores and thread count (a tiny model gives the fixed cost per token), so a
small model that is compute-bound on these cores is not predicted as if it were not.

    python -m syndicate.capacity.bandwidth TYPE --threads N     # one probe, one JSON line

Probe results are kept per CPU model, thread count and type in the user cache, so only the
first plan on a machine pays for them (about 10-30 s per type).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from shared.errors import ConfigError

# A probe model: 8 layers of hidden 1024 (~100 M weights: 58 MB at Q4_K, 205 MB at F16),
# so its weights stream from DRAM on any cache this side of 50 MB.
PROBE_HIDDEN, PROBE_LAYERS, PROBE_FF = 1024, 8, 2816
# The llama.cpp file type whose main weights are the tensor type (what a probe quantizes to).
FTYPE_FOR = {"Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q3_K": "Q3_K_S", "Q6_K": "Q6_K", "Q2_K": "Q2_K", "Q8_0": "Q8_0",
             "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
             "F16": "F16", "BF16": "BF16"}


class Bandwidth(BaseModel):
    """Bytes per second an agent streams through its decode kernels, and a token's fixed cost."""

    source: str  # "probe" or "--bandwidth"
    threads: int
    default_gbps: float = Field(gt=0)  # types without a probe of their own
    gbps_by_type: dict[str, float] = Field(default_factory=dict)
    overhead_s: float = 0.0  # per generated token, besides reading weights
    probe_loadavg: float | None = None  # the busiest 1-minute load average while probing

    def gbps(self, ggml_type: str) -> float:
        return self.gbps_by_type.get(ggml_type, self.default_gbps)


def from_flag(machine_gbps: float, agent_cores: int, machine_cores: int) -> Bandwidth:
    """The target's DRAM bandwidth, the agent's share by cores (all agents busy at once)."""
    if machine_gbps <= 0:
        raise ConfigError("--bandwidth must be positive (GB/s)")
    share = machine_gbps * agent_cores / max(1, machine_cores)
    return Bandwidth(source="--bandwidth", threads=agent_cores, default_gbps=share)


def _cache_file(threads: int, kind: str) -> Path:
    from shared.evaluation.settings import user_cache

    cpu = "cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            cpu = "".join(c if c.isalnum() else "-" for c in line.split(":", 1)[1].strip())
            break
    return user_cache() / "probe" / f"{cpu}-t{threads}-{kind}.json"


def probe_model(kind: str, hidden: int = PROBE_HIDDEN, layers: int = PROBE_LAYERS) -> Path:
    """The synthetic probe model of one weight type (``overhead``: a tiny one), made once."""
    from shared.evaluation.settings import user_cache
    from shared.llm.tiny import TinySpec, quantize_gguf, write_tiny_model

    folder = user_cache() / "probe"
    if kind == "overhead":
        path = folder / "overhead-h64.gguf"
        return path if path.is_file() else write_tiny_model(path, TinySpec(hidden=64, layers=1, ftype="f32"))
    path = folder / f"probe-h{hidden}-l{layers}-{kind}.gguf"
    if not path.is_file():
        src = folder / f"probe-h{hidden}-l{layers}-F16.gguf"
        if not src.is_file():
            write_tiny_model(src, TinySpec(hidden=hidden, layers=layers, ff=PROBE_FF * hidden // PROBE_HIDDEN,
                                           heads=8, kv_heads=8, ftype="f16"))
        if kind != "F16":
            quantize_gguf(src, path.with_suffix(".tmp"), FTYPE_FOR[kind])
            os.replace(path.with_suffix(".tmp"), path)
    return path


def decode_rate(path: Path, threads: int, tokens: int = 32) -> float:
    """Seconds per generated token of ``path`` (one token per decode, after a warm-up)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=256, n_batch=64, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        llm.eval([llm.token_bos(), 40, 41, 42])
        t0 = time.perf_counter()
        for i in range(tokens):
            llm.eval([50 + i % 40])
        return (time.perf_counter() - t0) / tokens
    finally:
        llm.close()


def run_probe(kind: str, threads: int, cpus: list[int] | None = None, fresh: bool = False) -> dict[str, float]:
    """One probe in a child process pinned to ``cpus`` (the agent's), cached per machine
    (``fresh``: measure again, e.g. in a quiet window)."""
    cached = _cache_file(threads, kind)
    if cached.is_file() and not fresh:
        return dict(json.loads(cached.read_text()))
    path = probe_model(kind)

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run([sys.executable, "-m", "syndicate.capacity.bandwidth", str(path), "--threads", str(threads)],
                          capture_output=True, text=True, timeout=900, preexec_fn=pin, env=env)
    if proc.returncode != 0:
        raise ConfigError(f"bandwidth probe ({kind}) failed: {proc.stderr.strip()[-400:]}")
    seconds = float(json.loads(proc.stdout.strip().splitlines()[-1])["s_per_token"])
    from syndicate.capacity.shape import read_shape

    shape = read_shape(path)
    rec = {"s_per_token": seconds, "bytes": float(sum(shape.bytes_by_type.values()) - shape.embedding_bytes),
           "loadavg": os.getloadavg()[0], "at": time.time()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(rec))
    return rec


def probe(types: list[str], threads: int, cpus: list[int] | None = None, fresh: bool = False) -> Bandwidth:
    """Effective decode bandwidth per weight type on these cores (module docstring)."""
    first = run_probe("overhead", threads, cpus, fresh)
    overhead, loads = first["s_per_token"], [first["loadavg"]]
    by_type: dict[str, float] = {}
    for t in types:
        if t not in FTYPE_FOR:
            continue  # F32 norms and biases: a rounding error of a model's bytes
        rec = run_probe(t, threads, cpus, fresh)
        by_type[t] = rec["bytes"] / max(1e-6, rec["s_per_token"] - overhead) / 1e9
        loads.append(rec["loadavg"])
    default = min(by_type.values()) if by_type else 10.0
    return Bandwidth(source="probe", threads=threads, default_gbps=default, gbps_by_type=by_type, overhead_s=overhead,
                     probe_loadavg=max(loads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syndicate.capacity.bandwidth")
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps({"s_per_token": decode_rate(args.model, args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
