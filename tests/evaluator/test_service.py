"""The evaluator with real processes: a real nats-server, the evaluator service consuming a
``--remote`` job, and ``--through-agents`` against router + coder-agent (scripted models) +
code-sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, WAIT_S, Services, write_script
from tests.evaluator.tiny_gguf import write_tiny

pytestmark = pytest.mark.integration

CODE_SUITE = [
    {"id": "sq", "prompt": "def square(x):\n    \"\"\"Return x squared.\"\"\"\n",
     "test": "def check(f):\n    assert f(3) == 9\n    assert f(-2) == 4\n", "entry_point": "square"},
    {"id": "neg", "prompt": "def negate(x):\n    \"\"\"Return -x.\"\"\"\n",
     "test": "def check(f):\n    assert f(3) == -3\n", "entry_point": "negate"},
]


def wait_status(state: Path, timeout_s: float = WAIT_S) -> dict:
    end = time.time() + timeout_s
    status: dict = {}
    while time.time() < end:
        for p in (state / "eval").glob("ev-*/status.json"):
            status = json.loads(p.read_text())
            if status.get("status") in ("done", "failed"):
                return status
        time.sleep(0.3)
    raise TimeoutError(f"remote eval did not finish: {status}")


def test_remote_run_is_done_by_the_service(services: Services, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    tiny = write_tiny(tmp_path / "tiny-F32.gguf")
    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 30)
    services.start("evaluator", "services.evaluator", SYNDICATE_EVAL_THREADS="1")
    services.wait_ready(["evaluator"])
    out = services.cli("eval", "run", str(text), "--model", str(tiny), "--n-ctx", "64", "--limit", "3",
                       "--remote", "--json")
    assert out.returncode == 0, out.stderr
    queued = json.loads(out.stdout.strip().splitlines()[-1])
    status = wait_status(services.state_dir)
    assert status["status"] == "done", status
    report_dir = Path(queued["report_dir"])
    data = json.loads((report_dir / "report.json").read_text())
    m = data["suites"][0]["models"][0]
    assert m["n"] == 3 and m["metrics"]["ppl"] > 1
    assert "tiny-F32" in (report_dir / "report.md").read_text()
    runs = json.loads(services.cli("eval", "runs", "--json").stdout)
    assert runs[0]["run_id"] == queued["run_id"] and runs[0]["status"] == "done"


@pytest.mark.skipif(
    not (REPO / "services" / "code_sandbox" / "main.py").is_file() or not (REPO / "shared" / "llm" / "factory.py").is_file(),
    reason="needs code-sandbox and the llama engine factory on this branch",
)
def test_through_agents_scores_the_syndicate(services: Services, tmp_path: Path) -> None:
    suite = tmp_path / "code.jsonl"
    suite.write_text("".join(json.dumps(r) + "\n" for r in CODE_SUITE))
    # The scripted coder answers square right and negate wrong, on every attempt.
    replies = ["```python\ndef square(x):\n    return x * x\n```", "```python\nassert square(2) == 4\n```",
               "```python\ndef negate(x):\n    return x\n```"]
    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
    services.start("coder-agent", "services.coder_agent", SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "c.json", replies))
    services.start("reasoner-agent", "services.reasoner_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "r.json", ["no idea"]))
    services.wait_ready(["router", "code-sandbox", "coder-agent", "reasoner-agent"])
    out = services.cli("eval", "run", str(suite), "--through-agents", "--agent-kind", "code", "--out",
                       str(tmp_path / "rep"), "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    agents = summary["models"]["syndicate (through agents)"]
    assert agents["n"] == 2
    assert agents["metrics"]["pass@1"] == pytest.approx(0.5)
    assert summary["executor"] == "code-sandbox"


def test_every_code_shape_scores_right_in_the_real_code_sandbox(services: Services, tmp_path: Path) -> None:
    """The shapes of test_programs.py, each with a known right and wrong answer, with the
    programs run by code-sandbox over the bus (as `syndicate eval run` runs them)."""
    from shared.evaluation.connection import BusClient
    from shared.evaluation.jobs import SandboxExecutor
    from shared.evaluation.runner import Runner, RunOptions
    from shared.evaluation.settings import EvaluatorSettings
    from tests.evaluator.test_programs import RIGHT, SHAPES, WRONG, Scripted

    services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
    services.wait_ready(["code-sandbox"])
    suite = tmp_path / "shapes.jsonl"
    suite.write_text("".join(json.dumps({**rec, "id": name}) + "\n" for name, rec in SHAPES.items()))
    model = str(write_tiny(tmp_path / "m.gguf"))
    s = EvaluatorSettings(state_dir=tmp_path / "s", eval_data_dir=tmp_path / "d", quant_dir=tmp_path / "q")
    with BusClient(services.server.url) as bus:
        for reply, want in ((RIGHT, 1.0), (WRONG, 0.0)):
            runner = Runner(s, RunOptions(fresh=True), cache_dir=tmp_path / "c", run_program=SandboxExecutor(bus),
                            scorer_factory=lambda *a, r=reply: Scripted(r))  # type: ignore[misc]
            m = runner.run(str(suite), [model]).models[0]
            assert [it["passed"] for it in m.items] == [[want == 1.0]] * len(SHAPES), [it["error"] for it in m.items]
            assert m.metrics["pass@1"] == want
