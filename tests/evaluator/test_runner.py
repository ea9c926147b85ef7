"""The runner with fake scorers/executors/agents (unit level): scoring, pass@k, resume after
an interrupt, through-agents records, perplexity/KLD plumbing, and the report files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.contracts import (
    Attempt,
    ExecRequest,
    ExecResult,
    TaskResult,
    TaskState,
    TaskSubmit,
    Usage,
)
from shared.evaluation import report
from shared.evaluation.results import ItemCache
from shared.evaluation.runner import AGENTS_LABEL, Runner, RunOptions
from shared.evaluation.settings import EvaluatorSettings
from tests.evaluator.tiny_gguf import write_tiny


@dataclass
class Gen:
    text: str
    prompt_tokens: int = 10
    completion_tokens: int = 5
    ttft_s: float = 0.1
    seconds: float = 0.5


class FakeScorer:
    """Answers code prompts from a table; can blow up after N generations (an interrupt)."""

    chat = True

    def __init__(self, answers: dict[str, str], interrupt_after: int | None = None) -> None:
        self.answers = answers
        self.interrupt_after = interrupt_after
        self.calls: list[str] = []
        self.closed = False

    def generate(self, **kw: Any) -> Gen:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        content = kw["messages"][-1]["content"]
        name = next(k for k in self.answers if f"def {k}(" in content)
        self.calls.append(name)
        return Gen(self.answers[name])

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return [ord(c) % 50 for c in text]

    def close(self) -> None:
        self.closed = True


def run_program(req: ExecRequest) -> ExecResult:
    """Stands in for code-sandbox: 'passes' when the program returns the right constant."""
    ok = "return 42" in req.code and "check(" in (req.test_code or "")
    return ExecResult(status="ok" if ok else "runtime_error", exit_code=0 if ok else 1, isolation="fake")


run_program.name = "fake-sandbox"  # type: ignore[attr-defined]


def code_suite(tmp_path: Path, n: int = 4) -> Path:
    p = tmp_path / "code.jsonl"
    p.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"def f{i}():\n    \"\"\"Return 42.\"\"\"\n",
                                     "test": "def check(c):\n    assert c() == 42\n", "entry_point": f"f{i}"}) + "\n"
                         for i in range(n)))
    return p


def model_file(tmp_path: Path, name: str = "m-Q4_K_M.gguf") -> Path:
    return write_tiny(tmp_path / name)  # a real (tiny) GGUF: the runner reads its header


def settings(tmp_path: Path) -> EvaluatorSettings:
    return EvaluatorSettings(state_dir=tmp_path / "state", eval_data_dir=tmp_path / "data", quant_dir=tmp_path / "q")


ANSWERS = {"f0": "```python\ndef f0():\n    return 42\n```", "f1": "    return 41\n",
           "f2": "```python\ndef f2():\n    return 42\n```", "f3": "    return 42\n"}


def test_code_suite_pass_at_1(tmp_path: Path) -> None:
    scorer = FakeScorer(ANSWERS)
    runner = Runner(settings(tmp_path), RunOptions(), cache_dir=tmp_path / "c", run_program=run_program,
                    scorer_factory=lambda *a: scorer)
    res = runner.run(str(code_suite(tmp_path)), [str(model_file(tmp_path))])
    m = res.models[0]
    assert m.metrics["pass@1"] == pytest.approx(0.75)  # f1 returns 41
    assert [it["passed"] for it in m.items] == [[True], [False], [True], [True]]
    assert res.executor == "fake-sandbox"
    assert scorer.closed


def test_interrupted_run_resumes_without_redoing_items(tmp_path: Path) -> None:
    suite, model = str(code_suite(tmp_path)), str(model_file(tmp_path))
    first = FakeScorer(ANSWERS, interrupt_after=2)
    runner = Runner(settings(tmp_path), RunOptions(), cache_dir=tmp_path / "c", run_program=run_program,
                    scorer_factory=lambda *a: first)
    with pytest.raises(KeyboardInterrupt):
        runner.run(suite, [model])
    assert first.calls == ["f0", "f1"] and first.closed
    second = FakeScorer(ANSWERS)
    runner = Runner(settings(tmp_path), RunOptions(), cache_dir=tmp_path / "c", run_program=run_program,
                    scorer_factory=lambda *a: second)
    res = runner.run(suite, [model])
    assert second.calls == ["f2", "f3"]  # only what was left
    assert res.models[0].metrics["pass@1"] == pytest.approx(0.75)
    # a torn last line (killed mid-write) is ignored, not fatal
    cache_file = next((tmp_path / "c").glob("*.jsonl"))
    with cache_file.open("a") as f:
        f.write('{"id": "p9", "resu')
    assert len(ItemCache(cache_file).records) == 4


def test_samples_give_pass_at_k(tmp_path: Path) -> None:
    class Alternating(FakeScorer):
        def generate(self, **kw: Any) -> Gen:  # right on even seeds only
            return Gen("    return 42\n" if kw["seed"] % 2 == 0 else "    return 0\n")

    runner = Runner(settings(tmp_path), RunOptions(samples=5), cache_dir=tmp_path / "c", run_program=run_program,
                    scorer_factory=lambda *a: Alternating({}))
    m = runner.run(str(code_suite(tmp_path, 2)), [str(model_file(tmp_path))]).models[0]
    assert m.metrics["pass@1"] == pytest.approx(3 / 5)  # seeds 0, 2, 4 of 5
    assert m.metrics["pass@5"] == pytest.approx(1.0)


class FakeAgents:
    def __init__(self) -> None:
        self.tasks: list[TaskSubmit] = []

    def run_task(self, task: TaskSubmit) -> TaskResult:
        self.tasks.append(task)
        name = task.text.split("`")[1]
        code = f"def {name}():\n    return 42\n" if name != "f1" else f"def {name}():\n    return 1\n"
        return TaskResult(task_id=task.task_id, status="done", kind="code", code=code,
                          attempts=[Attempt(n=1, code=code), Attempt(n=2, code=code)],
                          usage=Usage(output_tokens=40, seconds=2.0, ttft_s=0.5))

    def task_state(self, task_id: str) -> TaskState | None:
        task = next(t for t in self.tasks if t.task_id == task_id)
        return TaskState(task=task, status="done", route=["coder"])


def test_through_agents_runs_the_agents_code_in_the_sandbox_next_to_a_direct_model(tmp_path: Path) -> None:
    agents = FakeAgents()
    runner = Runner(settings(tmp_path), RunOptions(through_agents=True), cache_dir=tmp_path / "c",
                    run_program=run_program, scorer_factory=lambda *a: FakeScorer(ANSWERS), agents=agents)
    res = runner.run(str(code_suite(tmp_path)), [str(model_file(tmp_path))])
    direct, via = res.models
    assert via.label == AGENTS_LABEL and via.mode == "agents"
    assert via.metrics["pass@1"] == pytest.approx(0.75)
    assert via.metrics["mean_attempts"] == 2.0 and via.metrics["routed_to_coder"] == 1.0
    assert via.speed["gen_tok_s"] == pytest.approx(20.0)
    assert all("def check" not in t.text for t in agents.tasks)  # hidden tests stay hidden
    assert direct.mode == "direct"


class LogitScorer:
    """Perplexity plumbing: logits that put probability p on the true next token."""

    chat = False

    def __init__(self, p: float, vocab: int = 4) -> None:
        self.p, self.vocab = p, vocab
        self._tokens: list[int] = []

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return [ord(c) % self.vocab for c in text]

    def chunk_logits(self, tokens: list[int]) -> np.ndarray:
        q = (1 - self.p) / (self.vocab - 1)
        out = np.full((len(tokens), self.vocab), np.log(q))
        for i in range(len(tokens) - 1):
            out[i, tokens[i + 1]] = np.log(self.p)
        return out

    def close(self) -> None:
        pass


def test_text_suite_perplexity_and_kld(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh" * 40)  # 320 tokens: 2 chunks of 128
    a, b = model_file(tmp_path, "a-F16.gguf"), model_file(tmp_path, "b-Q4_0.gguf")
    scorers = {"a-F16": LogitScorer(0.5), "b-Q4_0": LogitScorer(0.25)}
    runner = Runner(settings(tmp_path), RunOptions(n_ctx=128), cache_dir=tmp_path / "c",
                    scorer_factory=lambda ref, *a: scorers[ref.label])
    res = runner.run(str(text), [str(a), str(b)])
    ref, other = res.models
    assert res.reference == "a-F16"
    assert ref.metrics["ppl"] == pytest.approx(2.0)  # exp(-log 0.5)
    assert other.metrics["ppl"] == pytest.approx(4.0)
    assert ref.metrics["scored_tokens"] == 2 * 63
    p, q = np.array([0.5, 1 / 6, 1 / 6, 1 / 6]), np.array([0.25, 0.25, 0.25, 0.25])
    assert other.metrics["kld_mean"] == pytest.approx(float((p * np.log(p / q)).sum()))
    # q is flat (argmax: token 0); p's argmax is the true next token: they agree where that is 0
    toks = [ord(c) % 4 for c in "abcdefgh" * 40]
    want = np.mean([toks[s + i + 1] == 0 for s in (0, 128) for i in range(64, 127)])
    assert other.metrics["same_top"] == pytest.approx(want)
    assert "kld_mean" not in ref.metrics


def test_report_files_and_json_summary(tmp_path: Path) -> None:
    runner = Runner(settings(tmp_path), RunOptions(), cache_dir=tmp_path / "c", run_program=run_program,
                    scorer_factory=lambda *a: FakeScorer(ANSWERS))
    res = runner.run(str(code_suite(tmp_path)), [str(model_file(tmp_path))])
    out = tmp_path / "rep"
    paths = report.write_report(res, out)
    md = (out / "report.md").read_text()
    assert "| m-Q4_K_M |" in md and "pass@1" in md and "fake-sandbox" in md
    assert paths["png"].stat().st_size > 1000
    data = json.loads((out / "report.json").read_text())
    assert data["suites"][0]["models"][0]["metrics"]["pass@1"] == pytest.approx(0.75)
    s = report.summary(res)
    assert s["models"]["m-Q4_K_M"]["n"] == 4 and s["models"]["m-Q4_K_M"]["metrics"]["pass@1"] == 0.75
    assert s["models"]["m-Q4_K_M"]["gen_tok_s"] == pytest.approx(4 / 0.4)
