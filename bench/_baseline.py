"""The peer as its users run it: plain llama-cpp-python ``Llama.create_chat_completion`` in
its own process, with a scrubbed environment (no OMP_*, no SYNDICATE_*: OpenMP's and the
binding's defaults), the same model file and thread count. Benchmarks send it requests
over a pipe; it answers with its own timing of each generation.

    with PlainLlama(model, threads=2) as peer:
        peer.generate(messages, max_tokens=128)  # {"tokens", "seconds", "text"}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCRUB = ("OMP_", "GOMP_", "KMP_", "SYNDICATE_")


def scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}


class PlainLlama:
    """A child process holding one ``llama_cpp.Llama``."""

    def __init__(self, model: Path, *, threads: int, n_ctx: int = 4096) -> None:
        self._cmd = [sys.executable, __file__, str(model), str(threads), str(n_ctx)]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PlainLlama:
        self._proc = subprocess.Popen(self._cmd, env=scrubbed_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"plain llama-cpp-python failed to load: {self._cmd}")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def generate(self, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"messages": messages, "max_tokens": max_tokens}) + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())


def _child(model: str, threads: int, n_ctx: int) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    print("READY", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        llm.reset()  # an empty cache, as the engine's benches start each request
        t0 = time.perf_counter()
        pieces, tokens = [], 0
        for chunk in llm.create_chat_completion(req["messages"], max_tokens=req["max_tokens"], temperature=0.0,
                                                stream=True):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                tokens += 1
                pieces.append(text)
        print(json.dumps({"tokens": tokens, "seconds": time.perf_counter() - t0, "text": "".join(pieces)}), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
