"""How a step's text pieces and outcomes reach an event loop from the worker thread.

One wake-up per loop per step, and one that never makes the worker wait for the loop.
``loop.call_soon_threadsafe`` wakes a loop by ``send()`` on its self-pipe, which releases
the GIL: the woken loop thread takes it and the worker cannot go on (to its next
``llama_decode``) until the loop has run its callbacks and gone back to sleep — the
loop's work sat on the critical path of every step (measured 2-5 ms per step on the
2-core dev host under load, against 15-70 ms decode steps). ``LoopWaker`` instead
appends to a deque and writes one byte to a pipe of its own *without releasing the GIL*
(libc ``write`` through ``ctypes.PyDLL``); the loop, watching the pipe with
``add_reader``, wakes and runs as soon as the worker releases the GIL, i.e. inside the
next ``llama_decode``. Loops without ``add_reader`` (Windows' proactor) fall back to
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from collections import deque
from collections.abc import Callable
from typing import Any

_libc_write: Any = None


def _write_holding_gil(fd: int) -> None:
    global _libc_write
    if _libc_write is None:
        write = ctypes.PyDLL(None).write  # PyDLL: the call keeps the GIL
        write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        write.restype = ctypes.c_ssize_t
        _libc_write = write
    _libc_write(fd, b"\0", 1)  # a full pipe (-1, EAGAIN) already holds a pending wake-up


class LoopWaker:
    """Delivers batches of items to ``deliver`` on ``loop`` (create it on that loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], None]) -> None:
        self.loop = loop
        self.wakeups = 0
        self._deliver = deliver
        self._items: deque[Any] = deque()
        self._r: int | None = None
        self._w: int | None = None
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            loop.add_reader(r, self._drain)
        except NotImplementedError:
            os.close(r)
            os.close(w)
            return
        self._r, self._w = r, w

    def send(self, batch: Any) -> None:
        """From the worker thread: queue ``batch`` and wake the loop."""
        self.wakeups += 1
        if self._w is None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self._deliver, batch)
            return
        self._items.append(batch)
        _write_holding_gil(self._w)

    def _drain(self) -> None:  # on the loop
        assert self._r is not None
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        while self._items:
            self._deliver(self._items.popleft())

    def close(self) -> None:
        """Stop watching (on the loop's thread, or after the loop closed)."""
        if self._r is None or self._w is None:
            return
        if not self.loop.is_closed():
            self.loop.remove_reader(self._r)
        os.close(self._r)
        os.close(self._w)
        self._r = self._w = None
