"""`syndicate plan`: memory per agent from the GGUF (or the roster before the file exists),
the roofline's expected tok/s, fits-with-headroom on this machine and on the recorded
EPYC 7502P, and `syndicate up` refusing a roster that cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shared.llm.roster import load_roster
from shared.llm.tiny import TinySpec, write_tiny_model
from syndicate.capacity import bandwidth, memory
from syndicate.capacity.plan import make_plan, parse_size
from syndicate.capacity.roofline import bytes_per_token, expected_tok_s
from syndicate.capacity.shape import read_shape
from syndicate.cli import commands_plan, commands_stack
from tests.topology.machines import SYSFS

REPO = Path(__file__).resolve().parents[2]
EPYC_ROSTER = REPO / "examples" / "rosters" / "epyc-7502p-512g.toml"

app = typer.Typer()
commands_plan.register(app)
commands_stack.register(app)


def plan_json(*args: str, code: int = 0) -> dict:
    r = CliRunner().invoke(app, ["plan", *args, "--json"])
    assert r.exit_code == code, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_epyc_roster_fits_512g_with_the_numbers_of_its_models() -> None:
    data = plan_json("--roster", str(EPYC_ROSTER), "--sysfs", str(SYSFS / "epyc-7502p"), "--ram", "512G",
                     "--bandwidth", "150")
    assert data["fits"] is True
    reasoner, coder = data["agents"]["reasoner"], data["agents"]["coder"]
    # KV = slots x n_ctx x layers x KV heads x head dim x 2 (K, V) x 2 bytes (f16)
    assert reasoner["memory"]["kv"] == 5 * 8192 * 80 * 8 * 128 * 2 * 2
    assert coder["memory"]["kv"] == 4 * 16384 * 64 * 8 * 128 * 2 * 2
    assert reasoner["memory"]["weights"] == 74_975_064_960 and reasoner["memory"]["repacked"] == 0  # Q8_0
    assert 0.6 * 19.85e9 < coder["memory"]["repacked"] < 0.75 * 19.85e9  # Q4_K_M: most of it re-laid
    assert not reasoner["file_exists"]  # planned from the roster's size and shape
    assert data["biggest"][0] == "reasoner"
    assert reasoner["memory_bytes"] > coder["memory_bytes"] > data["agents"]["router"]["memory_bytes"]
    # roofline: 12 of 32 cores' share of 150 GB/s over the 70B's bytes per token (embedding row aside)
    assert 0.6 < reasoner["expected_tok_s"] < 0.9
    assert reasoner["expected_tok_s"] < coder["expected_tok_s"] < data["agents"]["router"]["expected_tok_s"]
    assert data["total_bytes"] <= data["budget_bytes"] == int(512 * 2**30 * 0.9)


def test_a_roster_that_does_not_fit_exits_non_zero_naming_the_biggest() -> None:
    args = ["plan", "--roster", str(EPYC_ROSTER), "--sysfs", str(SYSFS / "epyc-7502p"), "--ram", "128G",
            "--bandwidth", "150"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1
    assert "does not fit" in r.output and r.output.index("reasoner (llama-3_3-70b") < r.output.index("coder (")
    assert plan_json(*args[1:], code=1)["fits"] is False


def test_a_recorded_machine_needs_ram_and_bandwidth(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["plan", "--roster", str(EPYC_ROSTER), "--sysfs", str(SYSFS / "epyc-7502p")])
    assert r.exit_code == 2 and "--ram" in r.output
    r = CliRunner().invoke(app, ["plan", "--roster", str(EPYC_ROSTER), "--sysfs", str(SYSFS / "epyc-7502p"), "--ram", "1T"])
    assert r.exit_code == 2 and "--bandwidth" in r.output


def test_shape_from_the_gguf_header(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "t.gguf", TinySpec(hidden=256, layers=3, heads=4, kv_heads=2, ftype="f16"))
    s = read_shape(path)
    assert (s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim_k, s.n_ff) == (3, 256, 4, 2, 64, 512)
    assert s.kv_bytes_per_token == 3 * 2 * (64 + 64) * 2
    assert s.file_bytes == path.stat().st_size
    assert sum(s.bytes_by_type.values()) < s.file_bytes < sum(s.bytes_by_type.values()) + 64 * 1024  # + header
    assert s.repack_bytes == 0  # F16 is not re-laid


def test_the_default_roster_on_this_machine_shares_the_0_5b_file(tmp_path: Path) -> None:
    roster = load_roster(REPO / "infra" / "models.toml")
    if not all(roster.role(r).path.is_file() for r in roster.roles):
        pytest.skip("the default models are not fetched (make models)")
    p = make_plan(roster, sysfs=Path("/"), ram=24 * 2**30, bandwidth_gbps=30.0, state_dir=tmp_path)
    files = {a.path for a in p.agents.values()}
    assert p.shared_weight_bytes == sum(a.memory.weights for a in p.agents.values()) - sum(
        read_shape(Path(f)).file_bytes for f in files)
    assert p.fits


def test_roles_without_a_roster_model_are_not_planned(tmp_path: Path) -> None:
    roster = load_roster(EPYC_ROSTER)
    p = make_plan(roster, sysfs=SYSFS / "epyc-7502p", ram=512 * 2**30, bandwidth_gbps=None, state_dir=tmp_path,
                  roles=["coder", "evaluator"], speed=False)  # what `syndicate up` passes: placed services
    assert list(p.agents) == ["coder"] and p.agents["coder"].expected_tok_s is None


def test_memory_parts_follow_the_role_settings(tmp_path: Path) -> None:
    s = read_shape(write_tiny_model(tmp_path / "t.gguf", TinySpec(hidden=256, ftype="f16")))
    one = memory.agent_memory(s, memory.RoleLoad(slots=1, n_ctx=1024))
    four = memory.agent_memory(s, memory.RoleLoad(slots=4, n_ctx=1024))
    assert four.kv == 4 * one.kv and four.weights == one.weights
    assert four.compute_reserved >= four.compute  # touched is a part of what is reserved


def test_roofline_reads_every_weight_but_the_embedding_once_per_token(tmp_path: Path) -> None:
    s = read_shape(write_tiny_model(tmp_path / "t.gguf", TinySpec(hidden=256, ftype="f16")))
    per = bytes_per_token(s, n_ctx=1000)
    assert per["KV"] == 500 * s.kv_bytes_per_token
    assert sum(v for k, v in per.items() if k != "KV") == sum(s.bytes_by_type.values()) - s.embedding_bytes
    bw = bandwidth.Bandwidth(source="test", threads=1, default_gbps=1.0)
    assert expected_tok_s(s, 1000, bw) == pytest.approx(1e9 / sum(per.values()))


def test_decode_probe_runs_llama_cpp(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    path = write_tiny_model(tmp_path / "t.gguf", TinySpec(hidden=64, layers=1, ftype="f32"))
    assert 0 < bandwidth.decode_rate(path, threads=1, tokens=8) < 1.0


def test_sizes_parse_like_ram_is_counted() -> None:
    assert parse_size("512G") == 512 * 2**30 and parse_size("24GiB") == 24 * 2**30 and parse_size("800M") == 800 * 2**20


def test_up_refuses_a_roster_that_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATE_ROSTER", str(EPYC_ROSTER))  # 140 GB of models on this machine
    monkeypatch.setenv("SYNDICATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SYNDICATE_ENGINE_SCRIPT", raising=False)
    r = CliRunner().invoke(app, ["up", "--detach", "--only", "coder-agent,reasoner-agent"])
    assert r.exit_code == 1, r.output
    assert "refusing to start" in r.output and "reasoner (llama-3_3-70b" in r.output
    assert not (tmp_path / "state" / "stack.json").exists()  # nothing was started
