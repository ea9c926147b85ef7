"""Runs a suite against models (directly, or as tasks through the running syndicate),
with a per-item result cache so an interrupted run resumes where it stopped."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from shared.contracts import ExecLimits, ExecRequest, TaskResult, TaskState, TaskSubmit
from shared.errors import ConfigError, SyndicateError
from shared.evaluation import metrics, programs, prompts
from shared.evaluation.executors import UNSAFE_LABEL, RunProgram, passed
from shared.evaluation.items import ChoiceItem, CodeItem, QAItem, SpeedItem
from shared.evaluation.models import ModelRef, resolve_model
from shared.evaluation.results import (
    AGGREGATORS,
    PRIMARY,
    ItemCache,
    ModelResult,
    SuiteResult,
    aggregate_speed,
    cache_key,
    running_score,
)
from shared.evaluation.settings import EvaluatorSettings
from shared.evaluation.suites import Suite, SuiteType, load_suite

if TYPE_CHECKING:  # scoring is imported lazily at run time (default_scorer)
    from shared.evaluation.scoring import Generation

AGENTS_LABEL = "syndicate (through agents)"


class RunOptions(BaseModel):
    """Everything that shapes a run besides the suite and the models (EvalRunRequest.options)."""

    suite_type: SuiteType | None = None
    limit: int | None = None
    through_agents: bool = False
    samples: int = Field(1, ge=1)  # > 1: pass@k with temperature sampling
    temperature: float = 0.0
    max_tokens: int = 512
    threads: list[int] = Field(default_factory=list)  # speed suite: one row per count; else first
    n_ctx: int = 512  # text suites: the perplexity chunk length
    reference: str | None = None  # text suites: KLD reference (default: the first model)
    prompt_style: Literal["auto", "chat", "completion"] = "auto"
    agent_kind: Literal["auto", "code", "reason"] = "auto"  # through agents: "auto" lets the router route
    fresh: bool = False  # ignore cached item results
    unsafe_local_exec: bool = False


class Progress(Protocol):
    def start(self, label: str, total: int, done: int) -> None: ...
    def advance(self, label: str, score: str) -> None: ...
    def finish(self, label: str) -> None: ...


class NullProgress:
    def start(self, label: str, total: int, done: int) -> None:
        pass

    def advance(self, label: str, score: str) -> None:
        pass

    def finish(self, label: str) -> None:
        pass


class Scorer(Protocol):  # what LlamaScorer offers (tests pass fakes)
    chat: bool

    def generate(self, *, messages: list[dict[str, str]] | None = None, prompt: str | None = None,
                 max_tokens: int = 512, stop: Sequence[str] = (), temperature: float = 0.0,
                 seed: int = 0, ban_eos: bool = False) -> Generation: ...
    def loglik(self, context: str, continuations: list[str]) -> list[float]: ...
    def tokenize(self, text: str, bos: bool = True) -> list[int]: ...
    def chunk_logits(self, tokens: list[int]) -> np.ndarray: ...
    def speed(self, prompt: str, max_tokens: int = 128, pp_tokens: int = 256) -> dict[str, float]: ...
    def close(self) -> None: ...


ScorerFactory = Callable[[ModelRef, int, int, bool], Scorer]  # (model, threads, n_ctx, logits)


class AgentClient(Protocol):
    def run_task(self, task: TaskSubmit) -> TaskResult: ...
    def task_state(self, task_id: str) -> TaskState | None: ...


def default_scorer(ref: ModelRef, threads: int, n_ctx: int, logits: bool) -> Scorer:
    # Other llama.cpp processes may share these cores (a running stack): OpenMP threads
    # sleep while they wait, unless the caller chose a policy. OpenMP reads it when
    # llama.cpp's library loads, so this holds where nothing loaded it before.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from shared.evaluation.scoring import LlamaScorer

    return LlamaScorer(ref, threads=threads, n_ctx=n_ctx, logits=logits)


def available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Runner:
    def __init__(
        self, settings: EvaluatorSettings, options: RunOptions, *, cache_dir: Path,
        progress: Progress | None = None, scorer_factory: ScorerFactory | None = None,
        run_program: RunProgram | None = None, agents: AgentClient | None = None,
    ) -> None:
        self.settings = settings
        self.opt = options
        self.cache_dir = cache_dir
        self.progress = progress or NullProgress()
        self.make_scorer = scorer_factory or default_scorer
        self.run_program = run_program
        self.agents = agents

    # --- entry point ----------------------------------------------------------------------
    def run(self, suite_spec: str, model_specs: list[str]) -> SuiteResult:
        suite = load_suite(suite_spec, self.settings.eval_data_dir, self.opt.suite_type)
        if self.opt.limit is not None and suite.type not in ("text",):
            suite.items = suite.items[: self.opt.limit]
        refs = [resolve_model(m, self.settings.quant_dir) for m in model_specs]
        if not refs and not self.opt.through_agents:
            raise ConfigError("name at least one --model (a role, a .gguf path) or pass --through-agents")
        if self.opt.through_agents and suite.type in ("text", "speed"):
            raise ConfigError(f"--through-agents does not apply to {suite.type} suites (they score models directly)")
        result = SuiteResult(
            suite=suite.name, type=suite.type, source=suite.source, n_items=len(suite.items),
            primary=PRIMARY[suite.type], options=self.opt.model_dump(exclude_defaults=True),
        )
        if suite.type == "code":
            if self.run_program is None:
                raise ConfigError("code suites need code-sandbox (no program runner configured)")
            result.executor = getattr(self.run_program, "name", "code-sandbox")
        if suite.type == "text":
            result.models, result.reference = self._run_text(suite, refs)
        elif suite.type == "speed":
            result.models = [self._run_speed(suite, r) for r in refs]
        else:
            result.models = [self._run_items(suite, r) for r in refs]
            if self.opt.through_agents:
                result.models.append(self._run_items(suite, None))
        result.finished_at = time.time()
        return result

    def _threads(self) -> int:
        return self.opt.threads[0] if self.opt.threads else (self.settings.eval_threads or available_threads())

    def _cache(self, suite: Suite, label: str, **extra: Any) -> ItemCache:
        key = cache_key(suite=suite.name, source=suite.source, type=suite.type, label=label, **extra)
        cache = ItemCache(self.cache_dir / f"{suite.name}-{key}.jsonl")
        if self.opt.fresh:
            cache.records.clear()
        return cache

    # --- code / qa / choice ---------------------------------------------------------------
    def _run_items(self, suite: Suite, ref: ModelRef | None) -> ModelResult:
        label = ref.label if ref else AGENTS_LABEL
        opts = {k: getattr(self.opt, k) for k in ("samples", "temperature", "max_tokens", "prompt_style")}
        if ref:
            cache = self._cache(suite, label, model=ref.cache_key(), **opts)
        else:
            cache = self._cache(suite, label, agent_kind=self.opt.agent_kind, nats=self.settings.nats_url)
        todo = [it for it in suite.items if it.id not in cache]
        self.progress.start(label, len(suite.items), len(suite.items) - len(todo))
        scorer: Scorer | None = None
        try:
            if todo and ref is not None:
                n_ctx = min(ref.n_ctx, 4096) if suite.type != "choice" else 2048
                scorer = self.make_scorer(ref, self._threads(), n_ctx, suite.type == "choice")
            for item in todo:
                rec = self._score_direct(scorer, item) if scorer else self._score_agents(item)
                cache.put(item.id, rec)
                done = [cache.records[i.id] for i in suite.items if i.id in cache]
                self.progress.advance(label, running_score(suite.type, done))
        finally:
            if scorer is not None:
                scorer.close()
            self.progress.finish(label)
        recs = [cache.records[i.id] for i in suite.items]
        m, speed = AGGREGATORS[suite.type](recs)
        out = ModelResult(label=label, n=len(recs), metrics=m, speed=speed, mode="agents" if ref is None else "direct",
                          items=[{"id": i.id, **cache.records[i.id]} for i in suite.items])
        if ref:
            out.path, out.quant, out.size_bytes = str(ref.path), ref.quant, ref.size_bytes
        if getattr(self.run_program, "name", "") == UNSAFE_LABEL and suite.type == "code":
            out.notes.append("programs ran WITHOUT code-sandbox (--unsafe-local-exec)")
        if suite.type == "code" and (note := _all_failed_note(recs)):
            out.notes.append(note)
        return out

    def _chat(self, scorer: Scorer) -> bool:
        return self.opt.prompt_style == "chat" or (self.opt.prompt_style == "auto" and scorer.chat)

    def _score_direct(self, scorer: Scorer, item: Any) -> dict[str, Any]:
        if isinstance(item, CodeItem):
            return self._code_direct(scorer, item)
        if isinstance(item, QAItem):
            chat = self._chat(scorer)
            g = scorer.generate(messages=prompts.qa_messages(item) if chat else None,
                                prompt=None if chat else prompts.qa_prompt(item),
                                max_tokens=self.opt.max_tokens, stop=() if chat else prompts.QA_STOPS)
            pred = metrics.extract_final_number(g.text)
            return {"correct": metrics.qa_exact_match(g.text, item.answer), "pred": pred,
                    "gold": metrics.extract_final_number(item.answer), "answer": g.text[-1500:], **_gen_stats([g])}
        if isinstance(item, ChoiceItem):
            t0 = time.perf_counter()
            conts = [" " + c for c in item.choices]
            lls = scorer.loglik(prompts.choice_context(item), conts)
            secs = time.perf_counter() - t0
            n_tok = len(scorer.tokenize(prompts.choice_context(item))) + sum(len(scorer.tokenize(c, bos=False)) for c in conts)
            return {"pred": metrics.choose(lls), "pred_norm": metrics.choose(lls, [len(c) for c in conts]),
                    "gold": item.answer_index, "logliks": [round(x, 4) for x in lls],
                    "prompt_tokens": n_tok, "seconds": secs}
        raise ConfigError(f"cannot score {type(item).__name__} here")

    def _code_direct(self, scorer: Scorer, item: CodeItem) -> dict[str, Any]:
        chat = self._chat(scorer)
        temp = self.opt.temperature if self.opt.samples == 1 else (self.opt.temperature or 0.8)
        gens, verdicts = [], []
        for s in range(self.opt.samples):
            g = scorer.generate(messages=prompts.code_messages(item) if chat else None,
                                prompt=None if chat else item.prompt, max_tokens=self.opt.max_tokens,
                                stop=() if chat else prompts.CODE_STOPS, temperature=temp, seed=s)
            gens.append(g)
            verdicts.append(self._run_code(item, g.text))
        return {"passed": [passed(v) for v in verdicts], "status": [v.status for v in verdicts],
                "answer": gens[0].text[-3000:], "error": verdicts[0].stderr[-800:], **_gen_stats(gens)}

    def _run_code(self, item: CodeItem, answer: str) -> Any:
        assert self.run_program is not None
        req = ExecRequest(code=programs.build_program(item, answer), test_code=programs.test_code(item),
                          limits=ExecLimits(wall_s=self.settings.eval_sandbox_timeout_s))
        return self.run_program(req)

    def _score_agents(self, item: Any) -> dict[str, Any]:
        if self.agents is None:
            raise ConfigError("--through-agents needs a connection to the running syndicate")
        if isinstance(item, CodeItem):
            text = prompts.code_task_text(item)
        elif isinstance(item, QAItem):
            text = prompts.qa_task_text(item)
        else:
            text = prompts.choice_task_text(item)
        task = TaskSubmit(kind=self.opt.agent_kind, text=text, timeout_s=self.settings.eval_task_timeout_s,
                          max_tokens=self.opt.max_tokens)
        t0 = time.perf_counter()
        try:
            res = self.agents.run_task(task)
        except SyndicateError as exc:  # the task failed to finish: a wrong answer, noted
            res = TaskResult(task_id=task.task_id, status="timeout", kind=task.kind, answer="", error=None)
            err = f"{exc.code}: {exc.message}"
        else:
            err = res.error.message if res.error else ""
        state = self.agents.task_state(task.task_id)
        rec: dict[str, Any] = {
            "task_id": task.task_id, "task_status": res.status, "route": state.route if state else [],
            "attempts": len(res.attempts), "wall_s": time.perf_counter() - t0, "task_error": err[-800:],
            "gen_tokens": res.usage.output_tokens, "gen_seconds": res.usage.seconds, "ttft_s": res.usage.ttft_s,
        }
        answer = res.code or res.answer
        rec["answer"] = answer[-3000:]
        if isinstance(item, CodeItem):
            v = self._run_code(item, answer) if answer.strip() else None
            rec |= {"passed": [bool(v and passed(v))], "status": [v.status if v else "no_answer"]}
        elif isinstance(item, QAItem):
            rec |= {"correct": metrics.qa_exact_match(res.answer, item.answer),
                    "pred": metrics.extract_final_number(res.answer), "gold": metrics.extract_final_number(item.answer)}
        else:
            pick = prompts.parse_letter(res.answer, len(item.choices))
            rec |= {"pred": pick if pick is not None else -1, "gold": item.answer_index}
        return rec

    # --- speed ----------------------------------------------------------------------------
    def _run_speed(self, suite: Suite, ref: ModelRef) -> ModelResult:
        threads = self.opt.threads or [self._threads()]
        cache = self._cache(suite, ref.label, model=ref.cache_key(), max_tokens=self.opt.max_tokens)
        keys = [(t, it) for t in threads for it in suite.items]
        todo = [(t, it) for t, it in keys if f"{it.id}/t{t}" not in cache]
        self.progress.start(ref.label, len(keys), len(keys) - len(todo))
        try:
            for t in threads:
                items = [it for tt, it in todo if tt == t]
                if not items:
                    continue
                scorer = self.make_scorer(ref, t, 1024, False)
                try:
                    scorer.speed("warm up", max_tokens=4, pp_tokens=16)  # first decode pays one-time setup
                    for it in items:
                        assert isinstance(it, SpeedItem)
                        rec = {**scorer.speed(it.prompt, max_tokens=it.max_tokens), "threads": t}
                        cache.put(f"{it.id}/t{t}", rec)
                        self.progress.advance(ref.label, running_score("speed", list(cache.records.values())))
                finally:
                    scorer.close()
        finally:
            self.progress.finish(ref.label)
        recs = [cache.records[f"{it.id}/t{t}"] for t, it in keys]
        m, speed, rows = aggregate_speed(recs)
        return ModelResult(label=ref.label, path=str(ref.path), quant=ref.quant, size_bytes=ref.size_bytes,
                           n=len(suite.items), metrics=m, speed=speed, per_threads=rows,
                           items=[{"id": f"{it.id}/t{t}", **cache.records[f"{it.id}/t{t}"]} for t, it in keys])

    # --- text: perplexity and KLD ---------------------------------------------------------
    def _run_text(self, suite: Suite, refs: list[ModelRef]) -> tuple[list[ModelResult], str]:
        base = resolve_model(self.opt.reference, self.settings.quant_dir) if self.opt.reference else refs[0]
        models = [base] + [r for r in refs if r.path != base.path]
        text = "\n\n".join(it.text for it in suite.items)
        n_ctx = self.opt.n_ctx
        threads = self._threads()
        scorers: dict[str, Scorer] = {}
        try:
            for r in models:  # loaded together, computed one at a time
                scorers[r.label] = self.make_scorer(r, threads, n_ctx, True)
            tokens = {r.label: scorers[r.label].tokenize(text) for r in models}
            n_chunks = len(metrics.chunk_spans(len(tokens[base.label]), n_ctx, self.opt.limit))
            if n_chunks == 0:
                raise ConfigError(f"the text has {len(tokens[base.label])} tokens: fewer than one {n_ctx}-token chunk")
            comparable = {r.label: tokens[r.label] == tokens[base.label] for r in models}
            caches = {r.label: self._cache(suite, r.label, model=r.cache_key(), n_ctx=n_ctx,
                                           reference=base.cache_key() if r is not base and comparable[r.label] else None)
                      for r in models}
            for r in models:
                self.progress.start(r.label, n_chunks, sum(f"chunk-{i}" in caches[r.label] for i in range(n_chunks)))
            pos = np.array(metrics.scored_positions(n_ctx))
            for ci in range(n_chunks):
                s, e = ci * n_ctx, (ci + 1) * n_ctx
                need = [r for r in models if f"chunk-{ci}" not in caches[r.label]]
                if not need:
                    continue
                ref_logits = None
                if any(r is not base and comparable[r.label] for r in need) or base in need:
                    t0 = time.perf_counter()
                    full = scorers[base.label].chunk_logits(tokens[base.label][s:e])
                    dt = time.perf_counter() - t0
                    ref_logits = full[pos]
                    if base in need:
                        caches[base.label].put(f"chunk-{ci}", _text_rec(full, tokens[base.label][s:e], dt))
                        self.progress.advance(base.label, running_score("text", list(caches[base.label].records.values())))
                    del full
                for r in need:
                    if r is base:
                        continue
                    toks = tokens[r.label][s:e]
                    if len(toks) < n_ctx:  # another tokenizer made fewer tokens of the same text
                        continue
                    t0 = time.perf_counter()
                    logits = scorers[r.label].chunk_logits(toks)
                    rec = _text_rec(logits, toks, time.perf_counter() - t0)
                    if comparable[r.label] and ref_logits is not None:
                        kl, same = metrics.kl_and_top(ref_logits, logits[pos])
                        rec |= {"kl": [round(float(x), 6) for x in kl], "same": [bool(x) for x in same]}
                    caches[r.label].put(f"chunk-{ci}", rec)
                    self.progress.advance(r.label, running_score("text", list(caches[r.label].records.values())))
        finally:
            for sc in scorers.values():
                sc.close()
            for r in models:
                self.progress.finish(r.label)
        out = []
        for r in models:
            recs = [caches[r.label].records[k] for k in (f"chunk-{i}" for i in range(n_chunks)) if k in caches[r.label]]
            m, speed = AGGREGATORS["text"](recs)
            res = ModelResult(label=r.label, path=str(r.path), quant=r.quant, size_bytes=r.size_bytes, n=len(recs),
                              metrics=m, speed=speed)
            if r is base:
                res.notes.append("KLD reference")
            elif not comparable[r.label]:
                res.notes.append(f"no KLD: tokenizer differs from the reference {base.label}")
            out.append(res)
        return out, base.label


def _all_failed_note(recs: list[dict[str, Any]]) -> str | None:
    """When every program of a code run failed, the commonest last error line: a score of
    0 from a harness problem must be visible, never silent."""
    if len(recs) < 3 or any(any(r.get("passed", [])) for r in recs):
        return None
    lines = [(r.get("error") or "").strip().splitlines()[-1:] for r in recs]
    top = Counter(line[0] for line in lines if line).most_common(1)
    said = f"; commonest error ({top[0][1]}/{len(recs)}): {top[0][0][:160]}" if top else ""
    return f"every program failed{said}"


def _text_rec(logits: np.ndarray, tokens: list[int], seconds: float) -> dict[str, Any]:
    nll = metrics.chunk_nll(logits, tokens)
    return {"nll": [round(float(x), 6) for x in nll], "tokens": len(tokens), "seconds": seconds}


def _gen_stats(gens: list[Any]) -> dict[str, Any]:
    """Generation timing of an item's samples: tokens after the first over the time after it."""
    return {
        "gen_tokens": sum(max(0, g.completion_tokens - 1) for g in gens),
        "gen_seconds": sum(max(0.0, g.seconds - g.ttft_s) for g in gens),
        "ttft_s": float(np.mean([g.ttft_s for g in gens])) if gens else None,
        "prompt_tokens": sum(g.prompt_tokens for g in gens),
    }
