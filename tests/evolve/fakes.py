"""In-process stand-ins for the evolution loop's ports (unit tests only): a KV bucket with
nats-py's semantics, a coder-agent that runs the real ``mutate`` on a ScriptedEngine, and
a scorer that runs the scoring program in a plain subprocess (trusted snippets only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats

from services.coder_agent.mutation import mutate
from services.router.evolution.loop import Delivery
from shared.contracts import AgentJob, EvolveRun, ExecRequest, ExecResult
from shared.llm.base import ScriptedEngine


@dataclass
class Entry:
    key: str
    value: bytes
    revision: int


class MemoryKV:
    """The subset of nats-py's KeyValue the RunStore uses, with the same errors."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.seq = 0

    async def get(self, key: str) -> Entry:
        if key not in self.data:
            raise nats.js.errors.KeyNotFoundError()
        return self.data[key]

    async def put(self, key: str, value: bytes) -> int:
        self.seq += 1
        self.data[key] = Entry(key, value, self.seq)
        return self.seq

    async def create(self, key: str, value: bytes) -> int:
        if key in self.data:
            raise nats.js.errors.KeyWrongLastSequenceError()
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        current = self.data.get(key)
        if current is None or current.revision != last:
            raise nats.js.errors.KeyWrongLastSequenceError()
        return await self.put(key, value)

    async def keys(self) -> list[str]:
        if not self.data:
            raise nats.js.errors.NoKeysError()
        return list(self.data)


class Crash(Exception):
    """Stands for the router process dying."""


class FakePorts:
    """Jobs go to an in-process 'coder-agent' (the real mutate() on a ScriptedEngine);
    scoring runs the scorer in a subprocess beside the candidate file."""

    def __init__(self, engine: ScriptedEngine, *, crash_after: int | None = None, score_timeout_s: float = 10.0,
                 queue: asyncio.Queue[Delivery] | None = None, drop: set[str] | None = None, capacity: int = 2) -> None:
        self.engine = engine
        # The results "stream": pass the same queue to a second FakePorts to resume a run.
        self.queue: asyncio.Queue[Delivery] = queue if queue is not None else asyncio.Queue()
        self.published: list[str] = []
        self.acked: list[str] = []
        self.scored: list[str] = []
        self.crash_after = crash_after  # deliveries handed out before fetch_results "crashes"
        self.handed = 0
        self.messages: list[str] = []
        self.score_timeout_s = score_timeout_s
        self.drop = drop or set()  # step-id suffixes whose jobs vanish (a coder that died for good)
        self.stages: list[str] = []  # stage of every scoring run, in order
        self.cancels: list[str] = []
        self.asked_models: list[tuple[str, str]] = []
        self._capacity = capacity

    async def publish_jobs(self, jobs: list[AgentJob]) -> None:
        for job in jobs:
            self.published.append(job.step_id)
            if job.step_id.rsplit(".", 1)[-1] in self.drop:
                continue
            result = await mutate(self.engine, job)

            async def ack(step: str = job.step_id) -> None:
                self.acked.append(step)

            self.queue.put_nowait(Delivery(result, ack))

    async def fetch_results(self, max_wait_s: float) -> list[Delivery]:
        if self.crash_after is not None and self.handed >= self.crash_after:
            raise Crash("router killed")
        try:
            d = await asyncio.wait_for(self.queue.get(), timeout=max_wait_s)
        except TimeoutError:
            return []
        self.handed += 1
        return [d]

    async def run_scoring(self, req: ExecRequest, traceparent: str = "") -> ExecResult:
        self.scored.append(req.files[0].content)
        self.stages.append(json.loads(req.stdin or "{}").get("stage", ""))
        return await run_local(req, self.score_timeout_s)

    async def capacity(self, models: list[str]) -> dict[str, int]:
        return {m: self._capacity for m in models}

    async def ask_model(self, job: AgentJob, model: str) -> None:
        """A named model's request: answered by the same scripted engine, tagged with the model."""
        self.asked_models.append((job.step_id, model))
        await self.publish_jobs([job])

    async def cancel_jobs(self, run_id: str) -> None:
        self.cancels.append(run_id)

    @contextlib.contextmanager
    def generation_span(self, run_id: str, n: int) -> Iterator[str]:
        yield f"trace-{n}"

    @contextlib.contextmanager
    def sample_span(self, run_id: str, sample: int) -> Iterator[str]:
        yield f"00-{sample:032x}-{sample:016x}-01"

    async def progress(self, run: EvolveRun, text: str) -> None:
        self.messages.append(text)


async def run_local(req: ExecRequest, timeout_s: float) -> ExecResult:
    """Run an ExecRequest's program with its files in a temp dir (no isolation)."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in req.files:
            (Path(tmp) / f.path).write_text(f.content)
        (Path(tmp) / "main.py").write_text(req.code)
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            # -S: no site-packages (scorers of tests need only the standard library), half the start-up.
            sys.executable, "-S", "main.py", cwd=tmp, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(req.stdin.encode()), timeout=min(timeout_s, req.limits.wall_s))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return ExecResult(status="timeout", wall_s=time.monotonic() - start, message="wall time limit")
    status = "ok" if proc.returncode == 0 else "runtime_error"
    return ExecResult(status=status, exit_code=proc.returncode, stdout=out.decode(), stderr=err.decode(),
                      wall_s=time.monotonic() - start)
