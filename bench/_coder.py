"""What the coder benchmarks share: a real nats-server and code-sandbox service, the coder
role's engine in this process (the agent's threads), and a sandbox client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import nats_server

from shared import subjects
from shared.bus import make_broker, request
from shared.contracts import ExecRequest, ExecResult
from shared.errors import BusError
from shared.llm.base import TextEngine
from shared.llm.factory import load_engine
from shared.llm.roster import load_roster
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SMALL = "qwen2_5-coder-0_5b"


def choose_model(model: str | None, threads: int) -> str:
    """Point the coder role at ``model`` (default: the roster's) with ``threads`` threads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    chosen = model or load_roster(Settings().roster).role("coder").model_id
    os.environ["SYNDICATE_MODEL_CODER_MODEL"] = chosen
    return chosen


@dataclass
class CoderBench:
    engine: TextEngine
    run: Callable[[ExecRequest], Awaitable[ExecResult]]

    def fresh(self) -> None:
        """An empty KV cache, so no arm reuses another's prompt."""
        reset = getattr(self.engine, "_reset_cache", None)
        if reset is not None:
            reset()


@asynccontextmanager
async def coder_bench(cpus: str | None = None) -> AsyncIterator[CoderBench]:
    """nats-server + code-sandbox running, the coder engine loaded (call choose_model first)."""
    state = Path(tempfile.mkdtemp(prefix="bench-coder-"))
    os.environ["SYNDICATE_STATE_DIR"] = str(state)
    with nats_server() as url:
        env = {**os.environ, "SYNDICATE_NATS_URL": url, "PYTHONPATH": str(REPO), "SYNDICATE_SANDBOX_CONCURRENCY": "4"}
        sandbox = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", "services.code_sandbox"], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            broker = make_broker("bench-coder", Settings(nats_url=url, state_dir=state), telemetry=False)
            await broker.start()
            engine = await asyncio.to_thread(load_engine, "coder", Settings(nats_url=url, state_dir=state, cpus=cpus))

            async def run(req: ExecRequest) -> ExecResult:
                # The answer may take the run's whole wall limit plus its wait in the
                # sandbox's queue: a shorter timeout would run a looping program again and again.
                timeout = (req.limits.wall_s or 30.0) * 3 + 30.0
                for attempt in range(30):  # the sandbox may still be starting
                    try:
                        return await request(broker, subjects.SANDBOX_EXEC, req, ExecResult, timeout=timeout)
                    except BusError:
                        raise  # it listened and did not answer in time: no verdict to wait for
                    except Exception:
                        if attempt == 29:
                            raise
                        await asyncio.sleep(1)
                raise AssertionError("unreachable")

            try:
                yield CoderBench(engine, run)
            finally:
                await engine.aclose()
                await broker.stop()
        finally:
            sandbox.terminate()
            sandbox.wait(10)
