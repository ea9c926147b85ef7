"""Read a GGUF file's key/value header quickly (no tensors, no big arrays).

``gguf.GGUFReader`` maps every tensor and took 11 s on the 491 MB Qwen file on a busy
machine; ``syndicate models`` only needs a few keys, which sit in the first kilobytes
(after the token arrays, which are skipped without decoding).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """Not a GGUF file, or a truncated one."""


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF string")
    return data.decode("utf-8", "replace")


def _value(f: BinaryIO, vtype: int, keep_arrays: bool) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        itype, count = _read(f, "<I"), _read(f, "<Q")
        if not keep_arrays:
            if itype in _SCALARS:
                f.seek(struct.calcsize(_SCALARS[itype]) * count, 1)
            else:
                for _ in range(count):
                    _value(f, itype, False)
            return {"array_of": itype, "count": count}
        return [_value(f, itype, True) for _ in range(count)]
    raise GGUFError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: str | Path, *, keep_arrays: bool = False) -> dict[str, Any]:
    """The header's key/values; arrays become ``{"array_of", "count"}`` unless kept."""
    with Path(path).open("rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        n_tensors, n_kv = _read(f, "<Q"), _read(f, "<Q")
        meta: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": n_tensors}
        for _ in range(n_kv):
            key = _string(f)
            meta[key] = _value(f, _read(f, "<I"), keep_arrays)
    return meta


def _quant_name(ftype: int | None) -> str | None:
    """A ``general.file_type`` as llama.cpp names it (``Q4_K_M``)."""
    if ftype is None:
        return None
    try:
        from gguf import LlamaFileType

        return LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (ImportError, ValueError):
        return str(ftype)


def describe(path: str | Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Architecture, name, quant type (file type name) and context length of a model."""
    meta = read_gguf_metadata(path) if meta is None else meta
    arch = meta.get("general.architecture")
    return {
        "architecture": arch,
        "name": meta.get("general.name"),
        "quant": _quant_name(meta.get("general.file_type")),
        "context_length": meta.get(f"{arch}.context_length") if arch else None,
        "has_chat_template": "tokenizer.chat_template" in meta,
    }


def served_facts(path: str | Path) -> dict[str, Any]:
    """What a process serving the model at ``path`` tells clients about the file (health
    details, read by the gateway's Ollama API): size in bytes, ``describe``'s facts and
    the parameter size label (``1.5B``) when the file states one."""
    meta = read_gguf_metadata(path)
    return {"size": Path(path).stat().st_size, **describe(path, meta),
            "parameter_size": meta.get("general.size_label")}
