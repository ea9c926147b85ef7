"""A plain-numpy forward pass of all-MiniLM-L6-v2 (float32, HF tokenizer), used only as
an independent reference for the llama.cpp GGUF embeddings."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class ReferenceMiniLM:
    def __init__(self, source: Path, max_tokens: int = 256) -> None:
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        with zipfile.ZipFile(source) as zf:
            self.cfg = json.loads(zf.read("config.json"))
            self.t = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load(zf.read("model.safetensors")).items()}
            self.tok = Tokenizer.from_str(zf.read("tokenizer.json").decode())
        self.tok.no_padding()
        self.tok.enable_truncation(max_tokens)

    def embed(self, text: str) -> np.ndarray:
        t, cfg = self.t, self.cfg
        ids = self.tok.encode(text).ids
        n = len(ids)
        x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:n]
        x = x + t["embeddings.token_type_embeddings.weight"][0]
        eps = cfg["layer_norm_eps"]
        x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
        heads = cfg["num_attention_heads"]
        hd = cfg["hidden_size"] // heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return v @ t[p + name + ".weight"].T + t[p + name + ".bias"]

            q = lin(x, "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
            k = lin(x, "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
            v = lin(x, "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(n, -1)
            x = _layer_norm(x + lin(a, "attention.output.dense"), t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"], eps)
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)).astype(np.float32))
            x = _layer_norm(x + lin(h, "output.dense"), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
        e = x.mean(0)
        return e / np.linalg.norm(e)
