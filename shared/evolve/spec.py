"""Reading an evolution SPEC file (TOML) into an ``EvolveSpec``.

Format (docs/evolve.md has the full description)::

    name = "sort-nearly-sorted"
    task = "Write sort_list(xs, less) ..."
    generations = 3          # optional, default 3 (--generations overrides)
    population = 4           # optional, default 4 (--population overrides)
    children = 4             # optional: candidates per generation (default: population)
    module = "candidate"     # optional: the name the scorer imports the candidate by
    hints = ["..."]          # optional: mutation hints cycled over the candidates
    rng_seed = 0             # optional

    [seed]                   # the seed program: a file next to the spec, or inline code
    file = "seed.py"         # or: code = '''...'''

    [scorer]                 # the scoring program (prints one number, higher is better)
    file = "score.py"

    [limits]                 # optional: EvolveLimits fields
    score_wall_s = 10

    [baselines.first_fit]    # optional: programs scored on the test stage beside the result
    file = "first_fit.py"

``seed``, ``scorer`` and each baseline may also be plain strings holding the code. The
mode "islands" keys (``function``, ``samples``, ``minutes``, ``[cascade]``,
``[database]``, ``[params]``, ``[[models]]``) are EvolveSpec's fields, as docs/evolve.md
describes them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.contracts import EvolveSpec
from shared.errors import ConfigError


def load_spec(path: Path) -> EvolveSpec:
    """Parse and validate a SPEC file; relative program paths are read next to it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for field in ("seed", "scorer"):
        data[field] = _program(data.get(field), field, path.parent)
    baselines = data.get("baselines", {})
    if not isinstance(baselines, dict):
        raise ConfigError(f"{path}: [baselines] maps names to programs, e.g. [baselines.first_fit] file = ...")
    data["baselines"] = {name: _program(value, f"baselines.{name}", path.parent) for name, value in baselines.items()}
    data.setdefault("name", path.stem)
    try:
        return EvolveSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"{path}: {problems}") from exc


def _program(value: Any, field: str, base: Path) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or ("file" in value) == ("code" in value):
        raise ConfigError(f"[{field}] needs exactly one of file = \"...\" or code = '''...'''")
    if "code" in value:
        return str(value["code"])
    file = base / str(value["file"])
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"[{field}] file {file}: {exc}") from exc
