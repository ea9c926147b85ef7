"""A tiny watchdog that removes the service's cgroups when the service dies, even by
SIGKILL: started once per service, it blocks on a pipe whose only writer is the service;
EOF means the service is gone. By then the boxes are dead (parent-death signals chain
service → bwrap → the box's init → its pid namespace), so what remains are the
groups, which it kills and removes. Usage: ``python -S janitor.py DIR...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def clean(paths: list[Path], timeout_s: float = 5.0) -> None:
    """Kill every process in the groups below ``paths`` and remove them bottom-up."""
    deadline = time.monotonic() + timeout_s
    for root in paths:
        if not root.is_dir():
            continue
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]
        for d in dirs:
            while True:
                try:
                    if (d / "cgroup.kill").exists():
                        (d / "cgroup.kill").write_text("1")
                    for pid in (d / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
        with contextlib.suppress(OSError):  # the shared base, once no other instance uses it
            root.parent.rmdir()


def start_janitor(paths: list[Path]) -> tuple[subprocess.Popen, int]:
    """Start the watchdog; returns it and the pipe's write end (close it to release it)."""
    r, w = os.pipe()
    os.set_inheritable(w, False)
    proc = subprocess.Popen(
        [sys.executable, "-S", __file__, *map(str, paths)], stdin=r, close_fds=True,
        start_new_session=True,  # a kill of the service's process group must not reach it
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(r)
    return proc, w


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the pipe's EOF ends it
    while os.read(0, 4096):
        pass
    clean([Path(a) for a in argv])


if __name__ == "__main__":
    main(sys.argv[1:])
