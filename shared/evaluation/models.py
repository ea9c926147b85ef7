"""What ``--model`` names: a roster role, a GGUF path, a registered quantized variant, or a
unique part of a file name in the model cache. Resolved to a ``ModelRef`` that carries what
the report shows (file size, quant type) and what the result cache keys on."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from pydantic import BaseModel

from shared.errors import ConfigError, ModelUnavailable

# llama.cpp's llama_ftype values (general.file_type) -> the names people use.
FTYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}
FULL_PRECISION = {"F32", "F16", "BF16"}
_HASH_PREFIX = re.compile(r"^[0-9a-f]{16}-")


class ModelRef(BaseModel):
    """One model under evaluation."""

    label: str  # what tables and plots show
    path: Path
    role: str | None = None
    quant: str = "?"
    size_bytes: int = 0
    source_quant: str | None = None  # for a variant: the type it was made from
    n_ctx: int = 4096

    def cache_key(self) -> dict[str, object]:
        st = self.path.stat()
        return {"path": str(self.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def model_cache_dir() -> Path:
    if os.environ.get("SYNDICATE_MODEL_CACHE"):
        return Path(os.environ["SYNDICATE_MODEL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syndicate" / "models"


def gguf_file_type(path: Path) -> str:
    """The quant type recorded in a GGUF's ``general.file_type`` (reads the key/value header
    only: gguf.GGUFReader maps every tensor and takes ~20 s on a 1 GB model)."""
    from shared.llm.gguf_meta import read_gguf_metadata

    try:
        value = read_gguf_metadata(path).get("general.file_type")
    except (ValueError, struct.error) as exc:  # GGUFError is a ValueError
        raise ConfigError(f"{path}: cannot read GGUF header ({exc})") from exc
    if value is None:
        return "?"
    return FTYPE_NAMES.get(int(value), f"ftype{value}")


def _label_of(path: Path) -> str:
    return _HASH_PREFIX.sub("", path.stem)


def registry_path(quant_dir: Path) -> Path:
    return quant_dir / "variants.json"


def load_registry(quant_dir: Path) -> dict[str, dict[str, str]]:
    """Variants made by ``syndicate eval quantize``: label -> {path, type, source, source_type}."""
    p = registry_path(quant_dir)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return {}


def _role_path(role: str) -> tuple[Path, int] | None:
    """Path and n_ctx of a roster role (None when the roster has no such role)."""
    try:
        from shared.llm.roster import load_roster
    except ImportError:  # the engine's roster is not in this checkout
        return _fallback_role_path(role)
    roster = load_roster()
    if role not in roster.roles:
        return None
    resolved = roster.role(role)
    return resolved.path, resolved.config.n_ctx


# Until shared/llm/roster.py lands, roles map onto the files the roster will pin.
_FALLBACK_ROLES = {"coder": "qwen2.5-coder", "reasoner": "qwen2.5-coder", "router": "SmolLM2-135M"}


def _fallback_role_path(role: str) -> tuple[Path, int] | None:
    needle = _FALLBACK_ROLES.get(role)
    if needle is None:
        return None
    hits = sorted(p for p in model_cache_dir().glob("*.gguf") if needle.lower() in p.name.lower())
    if not hits:
        raise ModelUnavailable(f"no model file for role {role!r} in {model_cache_dir()}")
    return hits[0], 4096


def resolve_model(spec: str, quant_dir: Path) -> ModelRef:
    """Resolve one ``--model`` value (see module docstring)."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise ModelUnavailable(f"no such model file: {path}")
        return _ref(_label_of(path), path.resolve())
    registry = load_registry(quant_dir)
    if spec in registry:
        v = registry[spec]
        ref = _ref(spec, Path(v["path"]))
        ref.source_quant = v.get("source_type")
        return ref
    role = _role_path(spec)
    if role is not None:
        p, n_ctx = role
        if not p.is_file():
            raise ModelUnavailable(f"model for role {spec!r} is missing: {p} (run `syndicate models fetch`)")
        ref = _ref(spec, p, role=spec)
        ref.n_ctx = n_ctx
        return ref
    hits = sorted({p.resolve() for p in model_cache_dir().rglob("*.gguf") if spec.lower() in p.name.lower()})
    if len(hits) == 1:
        return _ref(_label_of(hits[0]), hits[0])
    if len(hits) > 1:
        raise ConfigError(f"--model {spec!r} matches several cached files: {', '.join(h.name for h in hits)}")
    raise ConfigError(
        f"--model {spec!r} is not a role, a .gguf path, a quantized variant ({', '.join(registry) or 'none'}) "
        f"or a file in {model_cache_dir()}"
    )


def _ref(label: str, path: Path, role: str | None = None) -> ModelRef:
    return ModelRef(label=label, path=path, role=role, quant=gguf_file_type(path), size_bytes=path.stat().st_size)
