"""`syndicate models --json` on a roster with a present tiny model and a missing one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner


def test_models_json(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syndicate.cli import app, commands_models

    roster = tmp_path / "r.toml"
    roster.write_text(
        f'[models.tiny]\nfile = "tiny.gguf"\npath = "{tiny_model}"\n'
        f'[models.gone]\nfile = "gone.gguf"\npath = "{tmp_path / "gone.gguf"}"\n'
        '[roles.coder]\nmodel = "tiny"\n[roles.router]\nmodel = "gone"\n'
    )
    monkeypatch.setenv("SYNDICATE_ROSTER", str(roster))
    monkeypatch.delenv("SYNDICATE_MODEL_PATH", raising=False)
    if not any(g.name == "models" for g in app.registered_groups):
        commands_models.register(app)
    out = CliRunner().invoke(app, ["models", "--json", "--offline"])
    assert out.exit_code == 0, out.output
    rows = {r["role"]: r for r in json.loads(out.output)["models"]}
    assert rows["coder"]["architecture"] == "llama"
    assert rows["coder"]["quant"] == "F16"
    assert rows["coder"]["verified"] is True and rows["coder"]["size"] == tiny_model.stat().st_size
    assert rows["router"]["exists"] is False and rows["router"]["verified"] is False
    assert rows["coder"]["loaded_by"] == []
