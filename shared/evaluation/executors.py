"""Where generated programs run. The default and only normal path is code-sandbox over the
bus. ``LocalUnsafeExecutor`` runs them as a plain subprocess with a timeout and NO isolation:
it exists for measuring on a machine without code-sandbox, must be asked for explicitly
(``--unsafe-local-exec``), and stamps every report it touches as unsandboxed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from shared.contracts import ExecRequest, ExecResult, SandboxStatus

RunProgram = Callable[[ExecRequest], ExecResult]

UNSAFE_LABEL = "local-UNSANDBOXED"


class LocalUnsafeExecutor:
    """Runs a program with ``python -I`` in a temp dir (timeout only: no sandbox)."""

    name = UNSAFE_LABEL

    def __call__(self, req: ExecRequest) -> ExecResult:
        source = req.code + ("\n" + req.test_code if req.test_code else "")
        with tempfile.TemporaryDirectory(prefix="eval-unsafe-") as tmp:
            path = os.path.join(tmp, "main.py")
            with open(path, "w") as f:
                f.write(source)
            start = time.monotonic()
            try:
                p = subprocess.run([sys.executable, "-I", path], cwd=tmp, input=req.stdin, capture_output=True,
                                   text=True, timeout=req.limits.wall_s)
            except subprocess.TimeoutExpired:
                return ExecResult(status="timeout", wall_s=req.limits.wall_s, isolation=UNSAFE_LABEL)
            status: SandboxStatus = "ok" if p.returncode == 0 else "runtime_error"
            return ExecResult(status=status, exit_code=p.returncode, stdout=p.stdout[-4000:], stderr=p.stderr[-4000:],
                              wall_s=time.monotonic() - start, isolation=UNSAFE_LABEL)


def passed(result: ExecResult) -> bool:
    """A program passes when it ran to completion with exit code 0."""
    return result.status == "ok" and result.exit_code == 0
