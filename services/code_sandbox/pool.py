"""``BoxPool``: runs ExecRequests in one-shot boxes, a bounded number at a time, with an
optional pool of pre-started (warm) boxes. A box is never reused: a warm box is one
that was started before its request arrived and waits for it on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import PurePosixPath

from services.code_sandbox.box import Box, BoxConfig
from services.code_sandbox.reaper import ChildReaper, become_subreaper
from services.code_sandbox.settings import SandboxSettings, clamp_limits
from services.code_sandbox.tiers import DEGRADED, HostIsolation, detect
from shared.contracts import ExecRequest, ExecResult
from shared.errors import IsolationUnavailable, SandboxError

log = logging.getLogger(__name__)


def bad_file_path(req: ExecRequest) -> str | None:
    """Why an extra file's path is unacceptable (absolute, escaping the scratch dir), or None."""
    for f in req.files:
        parts = PurePosixPath(f.path).parts
        if f.path.startswith("/") or ".." in parts or not parts or "\0" in f.path:
            return f"file path {f.path!r} must be relative and stay inside the scratch directory"
        if f.path == "main.py":
            return "file path 'main.py' is reserved for the program itself"
    return None


class BoxPool:
    """The sandbox core, testable without NATS."""

    def __init__(self, settings: SandboxSettings | None = None, *, host: HostIsolation | None = None,
                 subreaper: bool = False):
        self.settings = settings or SandboxSettings()
        self.host = host
        self._own_host = host is None  # tear down its cgroup subtree on close
        self.subreaper = subreaper
        self.reaper = ChildReaper(reap_orphans=subreaper)
        self._sem = asyncio.Semaphore(self.settings.sandbox_concurrency)
        self._warm: list[Box] = []
        self._active: set[Box] = set()
        self._refill_task: asyncio.Task | None = None
        self.cfg: BoxConfig | None = None
        self.waiting = 0
        self.served = 0
        self._closed = False

    @property
    def tier(self) -> str:
        return self.host.tier if self.host else "unknown"

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def allowed(self) -> bool:
        return self.host is not None and self.host.runs_code(self.settings.sandbox_allow_degraded)

    def describe(self) -> dict:
        """Isolation details for health replies."""
        d = self.host.describe() if self.host else {"tier": "unknown"}
        d.update(allowed=self.allowed, warm=len(self._warm), concurrency=self.settings.sandbox_concurrency)
        return d

    async def start(self) -> None:
        """Detect the tier (unless given), start reaping and fill the warm pool."""
        if self.subreaper:
            become_subreaper()
        if self.host is None:  # before reaping starts: the probe waits for its own child
            self.host = await asyncio.to_thread(detect, self.settings)
        self.reaper.install()
        h = self.host
        self.cfg = BoxConfig(
            settings=self.settings, tier=h.tier, use_bwrap="bwrap" in h.layers and h.bwrap_path is not None,
            bwrap_path=h.bwrap_path, seccomp_bpf=h.seccomp_bpf, cgroups=h.cgroups, reaper=self.reaper,
        )
        if self.allowed:
            self._refill()

    def ensure_allowed(self) -> None:
        """Raise IsolationUnavailable when this host may not run code."""
        if not self.allowed:
            raise IsolationUnavailable(self._refusal(), detail=self.describe())

    def _refusal(self) -> str:
        h = self.host
        why = "; ".join(f"{k}: {v}" for k, v in (h.missing.items() if h else []))
        return (f"no isolation available on this host (tier {self.tier}: {why}); refusing to run code. "
                "Install bubblewrap (infra/scripts/install-system-deps.sh) or set "
                "SYNDICATE_SANDBOX_ALLOW_DEGRADED=1 to run without it")

    async def run(self, req: ExecRequest) -> ExecResult:
        """Run one request; never raises for the program's behaviour."""
        if self.cfg is None or self._closed:
            return ExecResult(status="internal_error", message="sandbox not started", isolation=self.tier)
        if not self.allowed:
            return ExecResult(status="rejected", isolation=self.tier, message=self._refusal())
        if (bad := bad_file_path(req)) is not None:
            return ExecResult(status="rejected", isolation=self.tier, message=bad)
        limits = clamp_limits(req.limits, self.settings.ceilings)
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        box: Box | None = None
        try:
            box = self._take_warm()
            if box is None:
                box = Box(self.cfg)
                await box.start()
            self._active.add(box)
            result = await box.run(req, limits)
            if self.cfg.tier == DEGRADED:
                result.isolation = DEGRADED
            self.served += 1
            return result
        except SandboxError as exc:
            return ExecResult(status="internal_error", isolation=self.tier, message=exc.message)
        finally:
            if box is not None:
                self._active.discard(box)
                box.destroy()
            self._sem.release()
            # Refill after the run, not during it: a starting box costs ~20 ms of CPU that
            # would otherwise compete with the program being timed.
            self._refill()

    def _take_warm(self) -> Box | None:
        while self._warm:
            box = self._warm.pop(0)
            if box.alive:
                return box
            asyncio.ensure_future(box.discard())
        return None

    def _refill(self) -> None:
        want = self.settings.sandbox_warm_pool
        if self._closed or not want or len(self._warm) >= want:
            return
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.ensure_future(self._refill_now())

    async def _refill_now(self) -> None:
        # Yield first so the run that triggered this starts before the new boxes do.
        await asyncio.sleep(0)
        while not self._closed and len(self._warm) < self.settings.sandbox_warm_pool:
            box = Box(self.cfg)
            try:
                await box.start()
            except SandboxError as exc:
                log.warning("warm box failed to start: %s", exc)
                return
            if self._closed:
                await box.discard()
                return
            self._warm.append(box)

    async def close(self) -> None:
        """Stop running boxes, drop warm ones, remove the cgroup subtree."""
        self._closed = True
        if self._refill_task is not None:
            self._refill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill_task
        for box in list(self._active):
            box.kill("shutdown")
        warm, self._warm = self._warm, []
        await asyncio.gather(*(b.discard() for b in warm), return_exceptions=True)
        for _ in range(200):  # let running boxes finish their teardown
            if not self._active:
                break
            await asyncio.sleep(0.01)
        self.reaper.close()
        if self._own_host and self.host is not None and self.host.cgroups is not None:
            self.host.cgroups.teardown()
