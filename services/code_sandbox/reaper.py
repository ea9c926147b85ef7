"""Collects exit statuses of the boxes the service started, on SIGCHLD.

With ``reap_orphans`` (the service: it is a child subreaper, PR_SET_CHILD_SUBREAPER) it
also reaps any descendant re-parented to it, so nothing lingers as a zombie; without it
(tests running the core in-process) it only waits for the pids it was asked about and
leaves other children of the process alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import threading
from typing import Any

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


class ChildReaper:
    """Maps pid -> future of its raw wait status."""

    def __init__(self, *, reap_orphans: bool = False, poll_s: float = 0.5):
        self.reap_orphans = reap_orphans
        self.poll_s = poll_s
        self._waiters: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signal = False
        self._tick: asyncio.TimerHandle | None = None
        self.orphans_reaped = 0
        # Statuses of pids nobody waited for yet (a box spawned in a thread may exit
        # before its waiter is registered); bounded, oldest dropped.
        self._unclaimed: dict[int, tuple[int, Any]] = {}

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start listening (SIGCHLD in the main thread; else a short poll)."""
        self._loop = loop or asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
                self._signal = True
        if not self._signal:
            self.poll_s = min(self.poll_s, 0.01)
        self._schedule()

    def _schedule(self) -> None:
        # A periodic pass as well: signals coalesce, and a handler can be replaced.
        assert self._loop is not None
        self._tick = self._loop.call_later(self.poll_s, self._on_tick)

    def _on_tick(self) -> None:
        self.reap()
        self._schedule()

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self._signal and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGCHLD)
        self.reap()

    def wait(self, pid: int) -> asyncio.Future[tuple[int, Any]]:
        """Future of ``pid``'s (raw wait status, rusage or None); register right after spawning."""
        assert self._loop is not None, "install() first"
        if pid in self._unclaimed:
            fut = self._loop.create_future()
            fut.set_result(self._unclaimed.pop(pid))
            return fut
        fut = self._waiters.get(pid)
        if fut is None:
            fut = self._waiters[pid] = self._loop.create_future()
        self.reap()  # it may have exited already
        return fut

    def _deliver(self, pid: int, status: int, usage: Any) -> None:
        fut = self._waiters.pop(pid, None)
        if fut is None:
            self.orphans_reaped += 1
            self._unclaimed[pid] = (status, usage)
            while len(self._unclaimed) > 256:
                self._unclaimed.pop(next(iter(self._unclaimed)))
        elif not fut.done():
            fut.set_result((status, usage))

    def reap(self) -> None:
        """Collect every status available now."""
        if self.reap_orphans:
            while True:
                try:
                    pid, status, usage = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                self._deliver(pid, status, usage)
        for pid in list(self._waiters):
            try:
                got, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                fut = self._waiters.pop(pid)
                if not fut.done():  # someone else reaped it: status unknown
                    fut.set_result((255 << 8, None))
                continue
            if got:
                self._deliver(got, status, usage)
