"""Quantization ladders with llama.cpp's quantize API (``llama_model_quantize``).

A ladder is only honest from a full-precision source (F32/F16/BF16): each variant's KL
divergence against the source is then the cost of that quantization. From an already
quantized file we refuse by default; with ``allow_requantize`` we make only *lower*
variants, label them "from <source type>", and the KLD reference is that quantized source,
never a pretend F16.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from shared.errors import ConfigError, EngineError
from shared.evaluation.models import FULL_PRECISION, gguf_file_type, registry_path

# Approximate bits per weight (llama.cpp's quantize table, 7B models): used to order types.
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_1": 6.0, "Q5_K_M": 5.69,
    "Q5_K_S": 5.54, "Q5_0": 5.5, "Q4_1": 5.0, "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_0": 4.5,
    "IQ4_NL": 4.5, "IQ4_XS": 4.25, "Q3_K_L": 4.27, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q2_K": 2.96,
    "Q2_K_S": 2.7,
}
_TYPE_SUFFIX = re.compile(r"[-_.](f32|f16|bf16|q\d(_k)?(_[msl0-9])?|iq\d_\w+)$", re.I)


class Variant(BaseModel):
    label: str
    type: str
    path: Path
    size_bytes: int
    source: Path
    source_type: str
    seconds: float = 0.0


def base_name(path: Path) -> str:
    """'1d96...-qwen2.5-coder-0.5b-instruct-q4_k_m.gguf' -> 'qwen2.5-coder-0.5b-instruct'."""
    stem = re.sub(r"^[0-9a-f]{16}-", "", path.stem)
    return _TYPE_SUFFIX.sub("", stem) or stem


def ftype_constant(name: str) -> int:
    """llama.cpp's LLAMA_FTYPE value for a type name ('Q4_K_M' -> 15)."""
    import llama_cpp

    key = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    if not hasattr(llama_cpp, key):
        raise ConfigError(f"unknown quantization type {name!r} (e.g. Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K)")
    return int(getattr(llama_cpp, key))


def plan(source_type: str, targets: list[str], allow_requantize: bool) -> tuple[list[str], list[str]]:
    """Which targets to make and why others are skipped. Raises when the source is quantized
    and requantizing was not allowed."""
    targets = [t.upper() for t in targets]
    if source_type not in FULL_PRECISION and not allow_requantize:
        raise ConfigError(
            f"the source is already quantized ({source_type}): there is no F16 baseline in it, and a ladder made "
            f"from it would not show what quantizing the original model costs. Use an F32/F16/BF16 GGUF, or pass "
            f"--allow-requantize to make lower variants labelled 'from {source_type}' (KLD then measured against "
            f"the {source_type} source, not F16)"
        )
    make, skipped = [], []
    src_bits = BITS_PER_WEIGHT.get(source_type, 32.0)
    for t in targets:
        if t == source_type:
            skipped.append(f"{t}: same as the source")
        elif source_type not in FULL_PRECISION and BITS_PER_WEIGHT.get(t, 0) >= src_bits:
            skipped.append(f"{t}: not below the {source_type} source (upcasting adds no precision)")
        else:
            make.append(t)
    return make, skipped


def quantize_file(src: Path, dst: Path, type_name: str, *, threads: int | None = None,
                  allow_requantize: bool = False) -> None:
    """Write ``dst`` as ``type_name`` (atomically: a failed run leaves no file)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_constant(type_name)
    params.nthread = threads or 0  # 0: hardware concurrency
    params.allow_requantize = allow_requantize
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise EngineError(f"llama_model_quantize {src.name} -> {type_name} failed (code {rc})")
    os.replace(tmp, dst)


def register(registry_dir: Path, variants: list[Variant]) -> None:
    """Record variants so ``--model LABEL`` finds them."""
    p = registry_path(registry_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(p.read_text()) if p.is_file() else {}
    for v in variants:
        data[v.label] = {"path": str(v.path), "type": v.type, "source": str(v.source), "source_type": v.source_type}
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(p)


def make_ladder(
    source: Path, targets: list[str], out_dir: Path, *, allow_requantize: bool = False, threads: int | None = None,
    registry_dir: Path | None = None, say: Callable[[str], None] = print,
) -> list[Variant]:
    """Quantize ``source`` to each target type; returns the source entry first, then variants."""
    source = source.expanduser().resolve()
    if not source.is_file():
        raise ConfigError(f"no such GGUF file: {source}")
    src_type = gguf_file_type(source)
    make, skipped = plan(src_type, targets, allow_requantize)
    requant = src_type not in FULL_PRECISION
    if requant:
        say(f"source {source.name} is already {src_type}: making only lower types, labelled 'from {src_type}'; "
            f"no F16 baseline exists for this model here")
    for s in skipped:
        say(f"skipped {s}")
    base = base_name(source)
    entries = [Variant(label=f"{base}-{src_type.lower()}", type=src_type, path=source, size_bytes=source.stat().st_size,
                       source=source, source_type=src_type)]
    for t in make:
        label = f"{base}-{t.lower()}" + (f"-from-{src_type.lower()}" if requant else "")
        dst = out_dir / f"{label}.gguf"
        started = time.monotonic()
        if not dst.is_file():
            say(f"quantizing {source.name} -> {t} ...")
            quantize_file(source, dst, t, threads=threads, allow_requantize=requant)
        entries.append(Variant(label=label, type=t, path=dst, size_bytes=dst.stat().st_size, source=source,
                               source_type=src_type, seconds=time.monotonic() - started))
    register(registry_dir or out_dir, entries)
    return entries
