"""Code suites in every common shape score right: HumanEval (stub + docstring), MBPP /
EvalPlus (module docstring with an example assert; MBPP's text + test_list) and plain task
text with a test. Each runs end to end — suite file, prompt, a scripted model's answer,
program assembly, a real Python process — with a known correct and a known wrong answer;
an item that cannot be assembled is an error naming it, never a silent 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import SuiteError
from shared.evaluation import programs, suites
from shared.evaluation.executors import LocalUnsafeExecutor
from shared.evaluation.runner import Runner, RunOptions
from shared.evaluation.settings import EvaluatorSettings
from tests.evaluator.test_runner import Gen, model_file

RIGHT = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
WRONG = "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"
MBPP_TESTS = ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
              "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))"]
TASK = "Write a function to find the shared elements from the given two lists."

SHAPES: dict[str, dict[str, Any]] = {
    # HumanEval: signature + docstring; the test defines check(candidate).
    "humaneval": {"task_id": "HumanEval/x", "entry_point": "similar_elements",
                  "prompt": "from typing import Tuple\n\n\ndef similar_elements(a: Tuple, b: Tuple) -> Tuple:\n"
                            f'    """{TASK}"""\n',
                  "test": "def check(candidate):\n" + "".join(
                      "    " + t.replace("similar_elements", "candidate") + "\n" for t in MBPP_TESTS)},
    # EvalPlus MBPP+: a module docstring with the task and one example assert, no def stub.
    "evalplus": {"task_id": "Mbpp/2", "entry_point": "similar_elements",
                 "prompt": f'"""\n{TASK}\n{MBPP_TESTS[0]}\n"""\n', "test": "\n".join(MBPP_TESTS)},
    # MBPP as published: text + test_list (+ test_setup_code).
    "mbpp": {"task_id": 2, "text": TASK, "test_list": MBPP_TESTS, "test_setup_code": "",
             "code": RIGHT},
    # A plain task with a test.
    "plain": {"id": "mine", "task": TASK + " Call it similar_elements.", "test": "\n".join(MBPP_TESTS)},
}


class Scripted:
    """A model that gives one fixed reply (a fenced block, as chat models answer)."""

    chat = True

    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []  # type: ignore[var-annotated]

    def generate(self, **kw: Any) -> Gen:
        self.prompts.append(kw["messages"][-1]["content"])
        return Gen(f"Here it is:\n```python\n{self.reply}```\n")

    def close(self) -> None:
        pass


def run_shape(tmp_path: Path, record: dict[str, Any], reply: str) -> tuple[Any, Scripted]:
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps(record) + "\n")
    s = EvaluatorSettings(state_dir=tmp_path / "s", eval_data_dir=tmp_path / "d", quant_dir=tmp_path / "q")
    model = Scripted(reply)
    runner = Runner(s, RunOptions(fresh=True), cache_dir=tmp_path / "c", run_program=LocalUnsafeExecutor(),
                    scorer_factory=lambda *a: model)
    return runner.run(str(suite), [str(model_file(tmp_path))]).models[0], model


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_scores_a_right_answer_1_and_a_wrong_one_0(shape: str, tmp_path: Path) -> None:
    right, model = run_shape(tmp_path, SHAPES[shape], RIGHT)
    assert right.metrics["pass@1"] == 1.0, right.items[0]["error"]
    assert TASK in model.prompts[0]  # the model was shown the task
    wrong, _ = run_shape(tmp_path, SHAPES[shape], WRONG)
    assert wrong.metrics["pass@1"] == 0.0
    assert "AssertionError" in wrong.items[0]["error"]  # it failed on the test, not on assembly


def test_shapes_are_told_apart() -> None:
    items = {k: suites.parse_records([v], "code", k)[0] for k, v in SHAPES.items()}
    assert {k: programs.prompt_shape(i) for k, i in items.items()} == {
        "humaneval": "stub", "evalplus": "module", "mbpp": "module", "plain": "text"}
    assert items["mbpp"].entry_point == "similar_elements"  # read from the asserts
    assert all(suites.detect_type(v) == "code" for v in SHAPES.values())


def test_a_module_prompt_keeps_its_imports_but_not_its_example() -> None:
    item = suites.parse_records([{"id": "m", "prompt": "import math\nassert f(4) == 2\n\ndef helper(x):\n    return x\n",
                                  "test": "assert f(9) == 3"}], "code", "t")[0]
    program = programs.build_program(item, "def f(x):\n    return int(math.sqrt(helper(x)))\n")
    assert "import math" in program and "def helper" in program
    assert "assert f(4)" not in program  # it would run before f exists
    assert programs.test_code(item).strip() == "assert f(9) == 3"  # no check() to call


def test_humaneval_body_continuation_still_works() -> None:
    item = suites.parse_records([SHAPES["humaneval"]], "code", "t")[0]
    body = "    return tuple(set(a) & set(b))\n"
    program = programs.build_program(item, body)
    assert program == item.prompt + body
    assert "check(similar_elements)" in programs.test_code(item)


@pytest.mark.parametrize(("record", "says"), [
    ({"id": "a", "prompt": "def f(:\n", "entry_point": "f", "test": "assert f() == 1"}, "does not parse"),
    ({"id": "b", "prompt": "Do it.", "test": "assert f(1 ==", "entry_point": "f"}, "test is not valid Python"),
    ({"id": "c", "prompt": "Do it.", "test": "def check(candidate):\n    assert candidate(1)\n"}, "no entry_point"),
    ({"id": "d", "prompt": "Do it.", "test": "  "}, "no test"),
])
def test_an_item_that_cannot_be_assembled_is_an_error_naming_it(record: dict, says: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"id": "ok", "prompt": "Do it.", "test": "assert True"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(SuiteError, match=rf"line 2: code item '{record['id']}'.*{says}"):
        suites.load_file(p)


def test_a_run_where_every_program_fails_says_why(tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    suite.write_text("".join(json.dumps({"id": str(i), "prompt": "Return 1.", "test": "assert one() == 1"}) + "\n"
                             for i in range(3)))
    s = EvaluatorSettings(state_dir=tmp_path / "s", eval_data_dir=tmp_path / "d", quant_dir=tmp_path / "q")
    runner = Runner(s, RunOptions(), cache_dir=tmp_path / "c", run_program=LocalUnsafeExecutor(),
                    scorer_factory=lambda *a: Scripted("def uno():\n    return 1\n"))
    m = runner.run(str(suite), [str(model_file(tmp_path))]).models[0]
    assert m.metrics["pass@1"] == 0.0
    assert any("every program failed" in n and "NameError" in n for n in m.notes)


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(tmp_path: Path) -> None:
    """The built-in HumanEval (first 12 problems) with its own canonical solutions."""
    raw = suites._cached_jsonl(EvaluatorSettings().eval_data_dir, "humaneval",
                               lambda: suites._humaneval(EvaluatorSettings().eval_data_dir))[:12]
    run = LocalUnsafeExecutor()
    for rec in raw:
        item = suites.parse_records([rec], "code", "humaneval")[0]
        from shared.contracts import ExecRequest

        ok = run(ExecRequest(code=programs.build_program(item, rec["canonical_solution"]), test_code=programs.test_code(item)))
        assert ok.exit_code == 0, (item.id, ok.stderr[-400:])
        bad = run(ExecRequest(code=programs.build_program(item, "    return None\n"), test_code=programs.test_code(item)))
        assert bad.exit_code != 0, item.id
