"""Engine fixtures: tiny random-weight GGUF models (milliseconds to load) and engines on them.

Engines here are built with ``pin=False`` so the pytest process keeps all its cpus;
pinning itself is tested in a subprocess (test_pinning.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.llm.tiny import TinySpec, write_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf", TinySpec(seed=1))


@pytest.fixture
def make_engine(tiny_model: Path):  # type: ignore[no-untyped-def]
    from shared.llm.llama import EngineConfig, LlamaEngine

    made: list[LlamaEngine] = []

    def make(**kw) -> LlamaEngine:  # type: ignore[no-untyped-def]
        cfg = {"model_path": tiny_model, "name": "tiny", "pin": False, "n_ctx": 4096, **kw}
        eng = LlamaEngine(EngineConfig(**cfg))
        made.append(eng)
        return eng

    yield make
    for eng in made:
        if not eng._closed:
            eng.close()


@pytest.fixture
async def engine(make_engine) -> AsyncIterator:  # type: ignore[no-untyped-def]
    eng = make_engine(queue_limit=2)
    yield eng
    await eng.aclose()
