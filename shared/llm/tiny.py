"""Tiny random-weight llama-architecture GGUF models for tests.

A model written here loads in milliseconds and generates at ~0.1 ms/token, so unit and
integration tests exercise the real llama.cpp engine (tokenizer, chat template, grammar,
sampling, speculation) without the real 100-500 MB models. Output text is gibberish by
design; what tests check is the machinery (streaming, schema, queue, cancel).

- vocabulary: SentencePiece-style ("llama" tokenizer) with byte fallback: <unk> <s> </s>,
  256 byte tokens, the 95 printable ASCII characters (space as "▁") and the two ChatML
  control tokens: 356 tokens.
- a ChatML chat template is embedded, so ``create_chat_completion`` works.
- the output rows of control tokens are zero: their logit is always 0 while the random
  ones are large, so greedy decoding never ends early and a test's ``max_tokens`` is
  what stops generation (deterministic length).
- hidden 64 by default; ``hidden=256`` lets llama.cpp quantize to real k-quants
  (``quantize_gguf``), whose 256-wide super-blocks need rows that wide.

    python -m shared.llm.tiny OUT.gguf [--hidden 64] [--seed 0] [--ftype f16]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# gguf TokenType values (kept numeric so this module imports without gguf for constants).
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6

# Weight types the gguf package can write itself; k-quants go through quantize_gguf.
_PY_FTYPES = {"f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. Defaults match the notes: ~250-490 KB, loads in ~10 ms."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ff: int = 0  # 0: 2 x hidden
    context: int = 4096
    seed: int = 0
    ftype: str = "f16"
    name: str = "tiny-llama"

    @property
    def ff_size(self) -> int:
        return self.ff or 2 * self.hidden


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """The byte-fallback vocabulary: (tokens, scores, token types)."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    printable = ["▁" if c == " " else c for c in (chr(i) for i in range(0x20, 0x7F))]
    tokens += printable
    types += [_NORMAL] * len(printable)
    tokens += ["<|im_start|>", "<|im_end|>"]
    types += [_CONTROL, _CONTROL]
    # SentencePiece scores: higher is preferred when merging; single chars only, so flat.
    scores = [0.0 if t != _NORMAL else -1.0 for t in types]
    return tokens, scores, types


def write_tiny_model(path: str | Path, spec: TinySpec | None = None) -> Path:
    """Write a random-weight llama GGUF to ``path`` (deterministic for a given spec/seed)."""
    import gguf

    spec = spec or TinySpec()
    if spec.ftype not in _PY_FTYPES:
        raise ValueError(f"ftype {spec.ftype!r}: use one of {sorted(_PY_FTYPES)} (k-quants: quantize_gguf)")
    if spec.hidden % spec.heads or spec.heads % spec.kv_heads:
        raise ValueError("hidden must divide by heads, heads by kv_heads")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    tokens, scores, types = tiny_vocab()
    n_vocab = len(tokens)
    head_dim = spec.hidden // spec.heads
    kv_dim = head_dim * spec.kv_heads

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(spec.name)
    w.add_context_length(spec.context)
    w.add_embedding_length(spec.hidden)
    w.add_block_count(spec.layers)
    w.add_feed_forward_length(spec.ff_size)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(_file_type(spec.ftype))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML_TEMPLATE)

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def add(name: str, data: np.ndarray, quantize: bool = True) -> None:
        if data.ndim == 1 or not quantize:
            w.add_tensor(name, data.astype(np.float32))
            return
        _add_weight(w, gguf, name, data, spec.ftype)

    emb = mat(n_vocab, spec.hidden, 1.0)
    out = mat(n_vocab, spec.hidden, 4.0 / np.sqrt(spec.hidden))
    # Control tokens never win greedily (logit 0 vs large random ones): fixed lengths.
    for i, t in enumerate(types):
        if t in (_CONTROL, _UNKNOWN):
            out[i] = 0.0
    add("token_embd.weight", emb)
    add("output_norm.weight", np.ones(spec.hidden, np.float32))
    add("output.weight", out)
    s = 1.0 / np.sqrt(spec.hidden)
    for b in range(spec.layers):
        add(f"blk.{b}.attn_norm.weight", np.ones(spec.hidden, np.float32))
        add(f"blk.{b}.attn_q.weight", mat(spec.hidden, spec.hidden, s))
        add(f"blk.{b}.attn_k.weight", mat(kv_dim, spec.hidden, s))
        add(f"blk.{b}.attn_v.weight", mat(kv_dim, spec.hidden, s))
        add(f"blk.{b}.attn_output.weight", mat(spec.hidden, spec.hidden, s))
        add(f"blk.{b}.ffn_norm.weight", np.ones(spec.hidden, np.float32))
        add(f"blk.{b}.ffn_gate.weight", mat(spec.ff_size, spec.hidden, s))
        add(f"blk.{b}.ffn_up.weight", mat(spec.ff_size, spec.hidden, s))
        add(f"blk.{b}.ffn_down.weight", mat(spec.hidden, spec.ff_size, 1.0 / np.sqrt(spec.ff_size)))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _file_type(ftype: str) -> int:
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
        "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
        "q5_1": gguf.LlamaFileType.MOSTLY_Q5_1,
    }[ftype]


def _add_weight(w, gguf, name: str, data: np.ndarray, ftype: str) -> None:  # noqa: ANN001
    if ftype == "f32":
        w.add_tensor(name, data)
    elif ftype == "f16":
        w.add_tensor(name, data.astype(np.float16))
    else:
        qtype = getattr(gguf.GGMLQuantizationType, ftype.upper())
        w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def quantize_gguf(src: str | Path, dst: str | Path, ftype: str = "Q4_K_M") -> Path:
    """Quantize a GGUF with llama.cpp itself (k-quants need hidden ≥ 256 rows).

    ``ftype`` is the suffix of a ``LLAMA_FTYPE_MOSTLY_*`` constant, e.g. "Q4_K_M", "Q8_0".
    """
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, {ftype}) failed: {rc}")
    return Path(dst)


def main(argv: list[str] | None = None) -> None:
    """CLI: write one tiny model."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ftype", default="f16", choices=sorted(_PY_FTYPES))
    p.add_argument("--quantize", default=None, help="then quantize with llama.cpp, e.g. Q4_K_M")
    a = p.parse_args(argv)
    spec = TinySpec(hidden=a.hidden, layers=a.layers, seed=a.seed, ftype=a.ftype)
    if a.quantize:
        tmp = a.out.with_suffix(".src.gguf")
        write_tiny_model(tmp, spec)
        quantize_gguf(tmp, a.out, a.quantize)
        tmp.unlink()
    else:
        write_tiny_model(a.out, spec)
    print(a.out)


if __name__ == "__main__":
    main()
