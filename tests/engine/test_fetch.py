"""Fetching and verifying model files, with small fake wheels (no network)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from shared.errors import ModelUnavailable
from shared.llm.fetch import ensure_model, fetch_model, verify_file
from shared.llm.roster import ModelSpec, PackagePart, ResolvedRole, RoleConfig, cache_name

PART_A, PART_B = b"GGUF" + b"a" * 5000, b"b" * 3000


def make_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, member, data in (("pkg_a", "pkg_a/data/part01.bin", PART_A), ("pkg_b", "pkg_b/data/part02.bin", PART_B)):
        with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(member, data)
            z.writestr(f"{name}/__init__.py", "")


def role(cache: Path, sha: str | None = None, size: int | None = None) -> ResolvedRole:
    data = PART_A + PART_B
    spec = ModelSpec(
        file="fake.gguf", sha256=sha or hashlib.sha256(data).hexdigest(), size=len(data) if size is None else size,
        parts=[PackagePart(package="pkg-a==1.0", member="pkg_a/data/part01.bin"),
               PackagePart(package="pkg-b==1.0", member="pkg_b/data/part02.bin")],
    )
    return ResolvedRole(name="coder", model_id="fake", spec=spec, config=RoleConfig(model="fake"),
                        path=cache / cache_name(spec))


def test_fetch_assembles_in_order_verifies_and_stamps(tmp_path: Path) -> None:
    make_wheels(tmp_path / "wheels")
    r = role(tmp_path / "cache")
    phases: list[str] = []
    path = fetch_model(r, wheel_dir=tmp_path / "wheels", progress=lambda p, d, t: phases.append(p))
    assert path.read_bytes() == PART_A + PART_B
    assert "assemble" in phases
    stamp = json.loads(path.with_name(path.name + ".verified").read_text())
    assert stamp["sha256"] == r.spec.sha256
    assert ensure_model(r) == path
    # already cached: no wheels needed at all
    assert fetch_model(r, wheel_dir=tmp_path / "nowhere") == path
    assert not list((tmp_path / "cache").glob("syndicate-fetch-*"))  # temp dir cleaned


def test_corrupt_file_is_model_unavailable(tmp_path: Path) -> None:
    make_wheels(tmp_path / "wheels")
    r = role(tmp_path / "cache")
    path = fetch_model(r, wheel_dir=tmp_path / "wheels")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes: the stamp's mtime no longer matches
    path.write_bytes(bytes(data))
    assert not verify_file(path, r.spec)
    with pytest.raises(ModelUnavailable, match="corrupt") as info:
        ensure_model(r)
    assert "syndicate models fetch" in info.value.message
    path.write_bytes(b"short")
    with pytest.raises(ModelUnavailable, match="corrupt"):
        ensure_model(r)


def test_missing_file_names_packages_and_env(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        ensure_model(role(tmp_path / "cache"))
    msg = info.value.message
    assert "missing" in msg and "pkg-a==1.0" in msg and "SYNDICATE_MODEL_CODER_PATH" in msg
    assert info.value.code == "model_unavailable"


def test_wrong_pin_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    make_wheels(tmp_path / "wheels")
    r = role(tmp_path / "cache", sha="0" * 64)
    with pytest.raises(ModelUnavailable, match="does not match its pin"):
        fetch_model(r, wheel_dir=tmp_path / "wheels")
    assert not r.path.exists()
    assert not list((tmp_path / "cache").glob("syndicate-fetch-*"))


def test_member_missing_from_wheels(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    with pytest.raises(ModelUnavailable, match="none of the downloaded wheels"):
        fetch_model(role(tmp_path / "cache"), wheel_dir=tmp_path / "wheels")


def test_user_file_without_hash_only_needs_to_exist(tmp_path: Path) -> None:
    f = tmp_path / "own.gguf"
    spec = ModelSpec(file="own.gguf", path=f)
    assert not verify_file(f, spec)
    f.write_bytes(b"GGUF")
    assert verify_file(f, spec)


def make_real_wheels(folder: Path) -> None:
    """Wheels pip accepts (with dist-info), served from a local folder instead of PyPI."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, member, data in (("pkg_a", "pkg_a/data/part01.bin", PART_A), ("pkg_b", "pkg_b/data/part02.bin", PART_B)):
        info = f"{name}-1.0.dist-info"
        with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(member, data)
            z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
            z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{info}/RECORD", "")


def test_download_shows_its_size_first_then_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.llm.fetch import download_size

    make_real_wheels(tmp_path / "index")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the real pip, offline, from a local folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    r = role(tmp_path / "cache")
    assert download_size(r.spec) == len(PART_A + PART_B)
    seen: list[tuple[str, int, int]] = []
    path = fetch_model(r, progress=lambda p, d, t: seen.append((p, d, t)))
    assert path.read_bytes() == PART_A + PART_B
    downloads = [(d, t) for p, d, t in seen if p == "download"]
    total = len(PART_A + PART_B)
    assert downloads[0] == (0, total)  # the size is known before any byte arrives
    assert len(downloads) >= 3 and downloads[-1] == (total, total)
    assert [d for d, _ in downloads] == sorted(d for d, _ in downloads)
