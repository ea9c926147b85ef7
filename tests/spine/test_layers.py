"""The import direction of the house (docs/architecture.md, Layout): shared/ is the floor
and imports neither services/ nor syndicate/; a service imports shared/ only (never
another service, never the operator's package); syndicate/ starts services by module
name and never imports them."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO


def imports(path: Path) -> set[str]:
    """Top-level package paths a file imports (``services.router`` for ``from services.router.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(package: str, allowed: Callable[[Path, str], bool]) -> list[str]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in imports(path):
            if name.split(".")[0] in ("shared", "services", "syndicate") and not allowed(path, name):
                out.append(f"{path.relative_to(REPO)} imports {name}")
    return out


def test_shared_imports_nothing_above_it() -> None:
    assert violations("shared", lambda _, name: name.startswith("shared")) == []


def test_a_service_imports_shared_and_itself_only() -> None:
    def allowed(path: Path, name: str) -> bool:
        own = "services." + path.relative_to(REPO / "services").parts[0]
        return name.startswith("shared") or name == own or name.startswith(own + ".")

    assert violations("services", allowed) == []


def test_the_operator_package_never_imports_a_service() -> None:
    assert violations("syndicate", lambda _, name: not name.startswith("services")) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from services.router.main import app\nimport shared.bus\n")
    assert imports(bad) == {"services.router.main", "shared.bus"}
