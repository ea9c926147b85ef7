"""What the memory and speed estimates need to know about a model: its architecture (from
the GGUF header, or given in the roster before the file exists) and its weight bytes per
tensor type (from the GGUF tensor table).

The tensor table follows the key/value header; it is read with a cursor over the first
megabytes of the file (``gguf.GGUFReader`` maps every tensor and takes ~20 s on the 1.1 GB
model on a busy machine; this takes milliseconds).
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from shared.errors import ConfigError

# GGUF value types with a fixed width: (struct format, bytes).
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class ModelShape(BaseModel):
    """Architecture numbers of one model and where its weight bytes are."""

    n_layer: int = Field(ge=1)
    n_embd: int = Field(ge=1)
    n_head: int = Field(ge=1)
    n_head_kv: int = Field(ge=1)
    head_dim_k: int = Field(ge=1)
    head_dim_v: int = Field(ge=1)
    n_ff: int = Field(ge=1)
    n_vocab: int = Field(ge=1)
    file_bytes: int = Field(ge=0)
    bytes_by_type: dict[str, int] = Field(default_factory=dict)  # tensor data per ggml type
    embedding_bytes: int = 0  # token_embd: read a row per token, never whole
    embedding_type: str | None = None
    tied_output: bool = False  # no output.weight: the embedding is also the output matrix
    repack_bytes: int | None = None  # bytes llama.cpp copies into repacked layouts (None: estimate)

    @property
    def kv_bytes_per_token(self) -> int:
        """One token's K and V in every layer, f16 (llama.cpp's default cache type)."""
        return self.n_layer * self.n_head_kv * (self.head_dim_k + self.head_dim_v) * 2


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int | float:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise EOFError
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def text(self) -> str:
        n = int(self.take("<Q"))
        if self.pos + n > len(self.data):
            raise EOFError
        self.pos += n
        return self.data[self.pos - n : self.pos].decode("utf-8", "replace")

    def value(self, vtype: int) -> object:
        if vtype in _FIXED:
            return self.take(_FIXED[vtype])
        if vtype == 8:
            return self.text()
        if vtype == 9:  # arrays: small numeric ones are read (per-layer head counts), the rest skipped
            itype, count = int(self.take("<I")), int(self.take("<Q"))
            if itype in _FIXED and count <= 1024:
                return [self.take(_FIXED[itype]) for _ in range(count)]
            if itype in _FIXED:
                self.pos += struct.calcsize(_FIXED[itype]) * count
            else:
                for _ in range(count):
                    self.value(itype)
            return None
        raise ConfigError(f"unknown GGUF value type {vtype}")


def _parse(data: bytes) -> tuple[dict[str, object], list[tuple[str, list[int], int]]]:
    cur = _Cursor(data)
    if data[:4] != b"GGUF":
        raise ConfigError("not a GGUF file")
    cur.pos = 8
    n_tensors, n_kv = int(cur.take("<Q")), int(cur.take("<Q"))
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = cur.text()
        meta[key] = cur.value(int(cur.take("<I")))
    tensors = []
    for _ in range(n_tensors):
        name = cur.text()
        dims = [int(cur.take("<Q")) for _ in range(int(cur.take("<I")))]
        ggml_type = int(cur.take("<I"))
        cur.take("<Q")  # data offset
        tensors.append((name, dims, ggml_type))
    return meta, tensors


def read_shape(path: Path) -> ModelShape:
    """The shape of a GGUF model file (reads its header and tensor table only)."""
    import gguf

    size, chunk = path.stat().st_size, 8 << 20
    while True:  # the header of a big-vocabulary model can pass the first chunk
        with path.open("rb") as f:
            data = f.read(chunk)
        try:
            meta, tensors = _parse(data)
            break
        except EOFError:
            if chunk >= size:
                raise ConfigError(f"{path}: truncated GGUF header") from None
            chunk *= 4
        except (struct.error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the GGUF header ({exc})") from exc
    arch = str(meta.get("general.architecture", "llama"))

    def key(name: str, default: int | None = None) -> int:
        v = meta.get(f"{arch}.{name}", default)
        if not isinstance(v, int):
            raise ConfigError(f"{path}: the GGUF header has no {arch}.{name}")
        return v

    by_type: Counter[str] = Counter()
    embd, n_vocab, embd_type = 0, 0, None
    for name, dims, t in tensors:
        qt = gguf.GGMLQuantizationType(t)
        block, type_size = gguf.GGML_QUANT_SIZES[qt]
        n = 1
        for d in dims:
            n *= d
        nbytes = n // block * type_size
        by_type[qt.name] += nbytes
        if name == "token_embd.weight":
            embd, embd_type = nbytes, qt.name
            n_vocab = dims[1] if len(dims) > 1 else 0
    n_embd, n_head = key("embedding_length"), key("attention.head_count")
    kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    n_head_kv = kv if isinstance(kv, int) else max([int(x) for x in kv] or [n_head]) if isinstance(kv, list) else n_head
    return ModelShape(
        n_layer=key("block_count"), n_embd=n_embd, n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=key("attention.key_length", n_embd // n_head), head_dim_v=key("attention.value_length", n_embd // n_head),
        n_ff=key("feed_forward_length"), n_vocab=key("vocab_size", n_vocab if embd else None),
        file_bytes=size, bytes_by_type=dict(by_type), embedding_bytes=embd, embedding_type=embd_type,
        tied_output=not any(name == "output.weight" for name, _, _ in tensors),
        repack_bytes=repacked_bytes(tensors),
    )


# Types llama.cpp's CPU backend copies into interleaved layouts for its gemm kernels
# (CPU_REPACK) on x86 with AVX2; measured on this build with one tiny model per type. The
# embedding is read by row lookups and never repacked.
REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL", "Q2_K"})


def repacked_bytes(tensors: list[tuple[str, list[int], int]]) -> int:
    import gguf

    total = 0
    for name, dims, t in tensors:
        qt = gguf.GGMLQuantizationType(t)
        if qt.name in REPACKED_TYPES and name != "token_embd.weight" and len(dims) == 2:
            block, type_size = gguf.GGML_QUANT_SIZES[qt]
            total += dims[0] * dims[1] // block * type_size
    return total


def type_summary(shape: ModelShape) -> str:
    """'Q4_K 68 %, Q6_K 32 %' (by bytes, types under 1 % left out)."""
    total = sum(shape.bytes_by_type.values()) or 1
    parts = sorted(shape.bytes_by_type.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{t} {100 * b / total:.0f} %" for t, b in parts if b / total >= 0.01)


class RosterShape(BaseModel):
    """A model's architecture as a roster gives it (``[models.X.shape]``), for planning
    before the file exists: the numbers on the model card, and the quant type."""

    model_config = {"extra": "forbid"}
    n_layer: int = Field(ge=1)
    n_embd: int = Field(ge=1)
    n_head: int = Field(ge=1)
    n_head_kv: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    n_ff: int = Field(ge=1)
    n_vocab: int = Field(ge=1)
    quant: str  # e.g. "Q4_K_M", "Q8_0", "F16"

    def model_shape(self, file_bytes: int) -> ModelShape:
        """The planner's view: ``file_bytes`` of the quant's main type, the embedding at the
        file's average bits per weight."""
        main = {"Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K", "Q3_K_M": "Q3_K",
                "Q2_K": "Q2_K"}.get(self.quant.upper(), self.quant.upper())
        params = self.n_layer * (2 * self.n_embd * self.n_embd + 2 * self.n_embd * self.n_head_kv * self.head_dim
                                 + 3 * self.n_embd * self.n_ff) + 2 * self.n_vocab * self.n_embd
        embd = int(file_bytes * self.n_vocab * self.n_embd / max(1, params))
        return ModelShape(n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head, n_head_kv=self.n_head_kv,
                          head_dim_k=self.head_dim, head_dim_v=self.head_dim, n_ff=self.n_ff, n_vocab=self.n_vocab,
                          file_bytes=file_bytes, bytes_by_type={main: file_bytes}, embedding_bytes=embd,
                          embedding_type=main)
