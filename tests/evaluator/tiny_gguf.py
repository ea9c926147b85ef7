"""A tiny random-weight llama GGUF for evaluator tests (shared/llm/tiny.py when it exists,
else this minimal writer: byte-level vocab, 2 layers; hidden 256 allows k-quants)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny(path: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0, ftype: str = "f32") -> Path:
    try:
        from shared.llm.tiny import TinySpec, write_tiny_model  # type: ignore[import-not-found]

        return write_tiny_model(path, TinySpec(hidden=hidden, layers=layers, seed=seed, ftype=ftype))
    except ImportError:
        pass
    import gguf

    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    printable = ["▁" if c == " " else c for c in map(chr, range(0x20, 0x7F))]
    tokens += printable
    types += [gguf.TokenType.NORMAL] * len(printable)
    vocab, heads, kv_heads, ff = len(tokens), 4, 2, 2 * hidden
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-eval")
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0 if ftype == "f32" else 1)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0 if t != gguf.TokenType.NORMAL else -1.0 for t in types])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    dt = np.float32 if ftype == "f32" else np.float16

    def t(name: str, *shape: int, scale: float = 0.5) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(dt))

    def ones(name: str) -> None:
        w.add_tensor(name, np.ones(hidden, dtype=np.float32))

    t("token_embd.weight", vocab, hidden, scale=8.0)
    ones("output_norm.weight")
    t("output.weight", vocab, hidden, scale=8.0)
    for i in range(layers):
        ones(f"blk.{i}.attn_norm.weight")
        ones(f"blk.{i}.ffn_norm.weight")
        t(f"blk.{i}.attn_q.weight", hidden, hidden)
        t(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_output.weight", hidden, hidden)
        t(f"blk.{i}.ffn_gate.weight", ff, hidden)
        t(f"blk.{i}.ffn_up.weight", ff, hidden)
        t(f"blk.{i}.ffn_down.weight", hidden, ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
