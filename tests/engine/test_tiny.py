"""The tiny model generator: deterministic, loadable by llama.cpp, quantizable."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.llm.gguf_meta import describe, read_gguf_metadata
from shared.llm.tiny import TinySpec, quantize_gguf, tiny_vocab, write_tiny_model


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = write_tiny_model(tmp_path / "a.gguf", TinySpec(seed=7)).read_bytes()
    b = write_tiny_model(tmp_path / "b.gguf", TinySpec(seed=7)).read_bytes()
    c = write_tiny_model(tmp_path / "c.gguf", TinySpec(seed=8)).read_bytes()
    assert a == b
    assert a != c
    assert len(a) < 600_000


def test_vocab_is_byte_fallback_with_chatml() -> None:
    tokens, scores, types = tiny_vocab()
    assert len(tokens) == len(scores) == len(types) == 356
    assert tokens[3 + 0x41] == "<0x41>"
    assert "<|im_start|>" in tokens and "<|im_end|>" in tokens


def test_header_describes_a_llama_with_chat_template(tiny_model: Path) -> None:
    info = describe(tiny_model)
    assert info["architecture"] == "llama"
    assert info["quant"] == "F16"
    assert info["has_chat_template"]
    meta = read_gguf_metadata(tiny_model)
    assert meta["tokenizer.ggml.tokens"]["count"] == 356
    assert meta["llama.embedding_length"] == 64


def test_llama_cpp_loads_and_chats(tiny_model: Path) -> None:
    from shared.llm.llama import import_llama_cpp

    lc = import_llama_cpp()
    llm = lc.Llama(str(tiny_model), n_ctx=512, n_threads=1, verbose=False)
    try:
        assert llm.n_vocab() == 356
        out = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=12, temperature=0)
        # control tokens never win greedily, so the length is exactly max_tokens
        assert out["usage"]["completion_tokens"] == 12
        assert out["choices"][0]["finish_reason"] == "length"
    finally:
        llm.close()


@pytest.mark.parametrize("ftype", ["q8_0", "q4_0"])
def test_python_quant_types_load(tmp_path: Path, ftype: str) -> None:
    from shared.llm.llama import import_llama_cpp

    path = write_tiny_model(tmp_path / f"{ftype}.gguf", TinySpec(ftype=ftype))
    assert describe(path)["quant"] == ftype.upper()
    llm = import_llama_cpp().Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        assert len(llm.tokenize(b"hello", add_bos=False)) == 5
    finally:
        llm.close()


def test_hidden_256_quantizes_to_k_quant(tmp_path: Path) -> None:
    src = write_tiny_model(tmp_path / "src.gguf", TinySpec(hidden=256, heads=4, kv_heads=2))
    dst = quantize_gguf(src, tmp_path / "q4km.gguf", "Q4_K_M")
    assert describe(dst)["quant"] == "Q4_K_M"
    assert dst.stat().st_size < src.stat().st_size


def test_bad_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_tiny_model(tmp_path / "x.gguf", TinySpec(ftype="q4_k"))
    with pytest.raises(ValueError):
        write_tiny_model(tmp_path / "x.gguf", TinySpec(hidden=60, heads=8))


def test_the_installed_build_has_its_targets_instruction_sets() -> None:
    from shared.llm.buildinfo import build_features, missing_for

    features = build_features()
    assert features.get("AVX2") or features.get("SSE3")  # the info string was parsed
    assert missing_for("sse", features) == []
    assert missing_for("avx512", {"AVX2": True, "FMA": True, "F16C": True}) == ["AVX512"]
    with pytest.raises(ValueError, match="unknown"):
        missing_for("amx", features)
