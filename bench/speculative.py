"""Prompt-lookup speculative decoding on code edits (the answer repeats most of the input):
end-to-end time per request with vs without speculation at temperature 0, on the real
coder model, same engine, same process. Goals: ``speedup`` ≥ 1.8, ``identical`` true.

Runs alternate (plain, speculative, plain, ...) and clear the KV cache before each, so
both pay the same prompt evaluation and drift in machine load hits both alike.

    python bench/speculative.py [--quick] [--model PATH] [--k 10] [--no-adaptive]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

from _common import emit

from shared.llm.base import GenerationRequest

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "You are a precise coding assistant. Reply with the complete modified code in one python block, nothing else."

# (instruction, source file, start marker, end marker): real code of this repository.
EDITS = [
    ("Rename the function `parse_cpus` to `parse_cpu_list` (definition and every use). Output the whole code.",
     "shared/settings.py", "def parse_cpus", None),
    ("Add a type-annotated local variable `count: int = 0` at the start of `write_tiny_model` and leave everything else unchanged. Output the whole code.",
     "shared/llm/tiny.py", "def tiny_vocab", "def _file_type"),
    ("Rename the parameter `path` to `file_path` in `read_gguf_metadata` and its uses. Output the whole code.",
     "shared/llm/gguf_meta.py", "def _read(", "def describe"),
]


def _snippet(file: str, start: str, end: str | None, limit: int = 2400) -> str:
    text = (REPO / file).read_text()
    i = text.index(start)
    j = text.index(end, i) if end else len(text)
    return text[i:j][:limit].rstrip() + "\n"


def _messages(instruction: str, code: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{instruction}\n\n```python\n{code}```"}]


async def run(model: Path, *, quick: bool, k: int, adaptive: bool, max_tokens: int) -> dict:
    from shared.llm.llama import EngineConfig, LlamaEngine

    eng = LlamaEngine(EngineConfig(
        model_path=model, name="coder", n_ctx=4096, speculative="prompt-lookup",
        spec_num_pred_tokens=k, spec_adaptive=adaptive, cpus=sorted(os.sched_getaffinity(0)),
    ))
    edits = EDITS[:1] if quick else EDITS
    rows = []
    try:
        # warm-up: first decode of a fresh context allocates buffers
        await eng.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
        for instruction, file, start, end in edits:
            msgs = _messages(instruction, _snippet(file, start, end, 1200 if quick else 2400))
            res = {}
            for spec in (False, True):
                eng._reset_cache()
                res[spec] = await eng.generate(GenerationRequest(
                    messages=msgs, max_tokens=max_tokens, temperature=0.0, speculative=spec))
            plain, fast = res[False], res[True]
            resyncs = eng.stats().get("last_spec_resyncs", 0)
            rows.append({
                "file": file, "input_tokens": plain.input_tokens, "output_tokens": plain.output_tokens,
                "plain_s": round(plain.seconds, 3), "spec_s": round(fast.seconds, 3),
                "plain_ttft_s": round(plain.ttft_s or 0, 3), "spec_ttft_s": round(fast.ttft_s or 0, 3),
                "plain_tok_s": round(plain.tokens_per_s, 1), "spec_tok_s": round(fast.tokens_per_s, 1),
                "acceptance": round(fast.spec_acceptance or 0.0, 3), "resyncs": resyncs,
                "identical": plain.text == fast.text,
                "speedup": round(plain.seconds / fast.seconds, 3),
            })
            print(rows[-1], file=sys.stderr)
    finally:
        await eng.aclose()
    plain_total = sum(r["plain_s"] for r in rows)
    spec_total = sum(r["spec_s"] for r in rows)
    return {
        "bench": "speculative", "model": str(model.name), "threads": eng.threads, "k": k, "adaptive": adaptive,
        "speedup": round(plain_total / spec_total, 3),
        "identical": all(r["identical"] for r in rows),
        "decode_speedup": round(statistics.mean(r["spec_tok_s"] / r["plain_tok_s"] for r in rows if r["plain_tok_s"]), 3),
        "ttft_ratio": round(sum(r["spec_ttft_s"] for r in rows) / sum(r["plain_ttft_s"] for r in rows), 3),
        "acceptance": round(statistics.mean(r["acceptance"] for r in rows), 3),
        "cases": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one edit, shorter code")
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: the roster's coder model)")
    p.add_argument("--k", type=int, default=None, help="draft tokens per step (default: the roster's)")
    p.add_argument("--no-adaptive", action="store_true", help="verify every draft found")
    p.add_argument("--max-tokens", type=int, default=None)
    a = p.parse_args()
    from shared.llm.fetch import ensure_model
    from shared.llm.roster import load_roster

    role = load_roster().role("coder")
    model = a.model or ensure_model(role)
    k = a.k or role.config.spec_num_pred_tokens
    max_tokens = a.max_tokens or (300 if a.quick else 700)
    emit(asyncio.run(run(model, quick=a.quick, k=k, adaptive=not a.no_adaptive, max_tokens=max_tokens)))


if __name__ == "__main__":
    main()
