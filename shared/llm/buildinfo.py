"""Which instruction sets the installed llama.cpp was built with, and a check that they
are the ones its wheel was built for (infra/scripts/llama-wheel.sh writes the target).

A build whose CMake flags did not take (a cached wheel of other flags, a compiler that
lacks an extension) silently runs ggml's SSE code several times slower; ``make install``
runs ``python -m shared.llm.buildinfo --target T`` after installing, which exits 1 then.

    python -m shared.llm.buildinfo [--target avx512|avx2|sse]
"""

from __future__ import annotations

import argparse
import sys

# What each target's library must report as "= 1" in llama_print_system_info().
REQUIRED = {
    "avx512": ("AVX2", "FMA", "F16C", "AVX512"),
    "avx2": ("AVX2", "FMA", "F16C"),
    "sse": (),
}


def build_features() -> dict[str, bool]:
    """The CPU features of the loaded llama.cpp build (``AVX512: True``, ...)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    out: dict[str, bool] = {}
    for part in info.replace("CPU :", "|").split("|"):
        key, _, val = part.partition("=")
        if val.strip() in ("0", "1"):
            out[key.strip()] = val.strip() == "1"
    return out


def missing_for(target: str, features: dict[str, bool]) -> list[str]:
    """The features ``target`` needs that the build lacks."""
    if target not in REQUIRED:
        raise ValueError(f"unknown llama.cpp build target {target!r} ({', '.join(REQUIRED)})")
    return [f for f in REQUIRED[target] if not features.get(f)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default=None, help="the wheel's build target (its cache folder's TARGET file)")
    a = p.parse_args(argv)
    features = build_features()
    have = " ".join(k for k, v in features.items() if v)
    if a.target is None:
        print(have)
        return 0
    missing = missing_for(a.target, features)
    if missing:
        print(f"llama.cpp was built for {a.target} but lacks {', '.join(missing)} (it has: {have}): "
              "it would run on slower SSE code. Delete its folder in ~/.cache/syndicate/wheels and "
              "run `make install` again.", file=sys.stderr)
        return 1
    print(f"llama.cpp build ok for {a.target}: {have}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
