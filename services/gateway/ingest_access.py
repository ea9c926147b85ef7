"""Which host folders a remote caller may have the gateway read (MCP's ``ingest``).

Only folders under the operator's allow-list (``SYNDICATE_GATEWAY_INGEST_ROOTS``, empty
by default) are read, never the stack's state folder (NATS data, credentials, traces).
Paths are compared after resolving symlinks, for the folder asked for and again for
every file found in it, so a link inside an allowed folder cannot lead outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.errors import NotAllowed


@dataclass(frozen=True)
class IngestAccess:
    roots: tuple[Path, ...]
    state_dir: Path

    @classmethod
    def of(cls, roots: list[Path], state_dir: Path) -> IngestAccess:
        return cls(tuple(r.expanduser().resolve() for r in roots), state_dir.resolve())

    def refusal(self, path: Path) -> str | None:
        """Why ``path`` may not be read (None: it may)."""
        real = path.expanduser().resolve()
        if not self.roots:
            return "this gateway reads no folders (the operator sets SYNDICATE_GATEWAY_INGEST_ROOTS)"
        if real.is_relative_to(self.state_dir):
            return "the stack's state folder is never read"
        if not any(real.is_relative_to(root) for root in self.roots):
            return f"outside the folders this gateway may read ({', '.join(map(str, self.roots))})"
        return None

    def folder(self, requested: str) -> Path:
        """The folder or file a caller asked for, as a path (raises NotAllowed)."""
        path = Path(requested).expanduser()
        if not path.is_absolute():  # relative to the first allowed folder, never to the cwd
            if not self.roots:
                raise NotAllowed(f"{requested}: {self.refusal(path)}")
            path = self.roots[0] / path
        if (reason := self.refusal(path)) is not None:
            raise NotAllowed(f"{requested}: {reason}")
        if not path.exists():
            raise NotAllowed(f"{requested}: no such file or folder under the allowed folders")
        return path
