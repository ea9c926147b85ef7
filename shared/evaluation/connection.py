"""The evaluator's bus calls, usable from the synchronous runner: programs to code-sandbox
(SANDBOX_EXEC), tasks to the running syndicate (TASK_SUBMIT, answer from the task's events
and the task-state KV), and remote eval jobs (EVAL_RUN).

``BusClient`` owns a broker on an event loop in a background thread and exposes blocking
methods, so llama.cpp scoring (blocking C calls) and bus waits never share a loop. Tasks go
through ``shared.task_client``, as the CLI's and the gateway's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from pydantic import BaseModel

from shared import subjects
from shared.bus import make_broker
from shared.contracts import (
    ErrorReply,
    EvalRunRequest,
    ExecRequest,
    ExecResult,
    TaskResult,
    TaskState,
    TaskSubmit,
)
from shared.errors import BusError, error_from_code
from shared.settings import Settings
from shared.task_client import TaskClient

T = TypeVar("T", bound=BaseModel)


def parse_reply(data: bytes, reply_type: type[T]) -> T:
    """A typed reply, or the SyndicateError an ErrorReply stands for."""
    obj = json.loads(data)
    if isinstance(obj, dict) and "error" in obj and set(obj) <= {"version", "error"}:
        err = ErrorReply.model_validate(obj).error
        raise error_from_code(err.code, err.message, err.detail)
    return reply_type.model_validate(obj)


class BusClient:
    """Blocking facade over one broker (call ``close()`` when done)."""

    def __init__(self, settings: Settings | str, *, name: str = "evaluator") -> None:
        """``settings``: where the bus is (a cluster's nodes, with credentials), or a URL."""
        if isinstance(settings, str):
            settings = Settings(nats_url=settings)
        where = ", ".join(s.rsplit("@", 1)[-1] for s in settings.nats_servers)  # never print a password
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eval-bus", daemon=True)
        self._thread.start()
        self.broker = make_broker(name, settings)
        try:
            self._run(self._connect(settings.connect_timeout_s), timeout=settings.connect_timeout_s + 5)
        except Exception as exc:
            self._stop()
            raise BusError(f"cannot reach NATS at {where}: {exc} (is the stack up? `syndicate up`)") from exc
        self.nc: nats.NATS = self.broker.connection
        self.tasks = TaskClient(self.broker)

    async def _connect(self, timeout_s: float) -> None:
        await asyncio.wait_for(self.broker.connect(), timeout=timeout_s)
        await self.broker.start()

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- code-sandbox -------------------------------------------------------------------
    def exec(self, req: ExecRequest) -> ExecResult:
        """Run a program in code-sandbox (request/reply on SANDBOX_EXEC)."""
        # Generous: under CPU load the sandbox's own setup (bwrap, cgroup) takes seconds.
        timeout = req.limits.wall_s + 60

        async def call() -> ExecResult:
            payload = req.model_dump_json().encode()
            for attempt in range(4):  # a restarting sandbox has no responders for a moment
                try:
                    msg = await self.nc.request(subjects.SANDBOX_EXEC, payload, timeout=timeout)
                    return parse_reply(msg.data, ExecResult)
                except nats.errors.NoRespondersError as exc:
                    if attempt == 3:
                        raise BusError("code-sandbox is not running (no responders on SANDBOX_EXEC)") from exc
                    await asyncio.sleep(1.0 + attempt)
                except (TimeoutError, nats.errors.TimeoutError) as exc:
                    if attempt >= 1:
                        raise BusError(f"code-sandbox did not answer within {timeout:.0f}s (twice)") from exc
            raise AssertionError("unreachable")

        return self._run(call())

    # --- tasks through the agents -----------------------------------------------------
    def run_task(self, task: TaskSubmit, *, wait_s: float | None = None) -> TaskResult:
        """Submit a task to the syndicate and wait for its final TaskResult (a synthesized
        ``timeout`` one when nothing ends it ``wait_s`` past its deadline)."""
        return self._run(self.tasks.run(task, grace_s=30.0 if wait_s is None else max(0.0, wait_s - task.timeout_s)))

    def task_state(self, task_id: str) -> TaskState | None:
        """The router's record of a task (route, steps), or None."""
        return self._run(self.tasks.state(task_id), timeout=15)

    # --- remote eval jobs ---------------------------------------------------------------
    def publish_eval(self, req: EvalRunRequest) -> None:
        """Queue an evaluation for the evaluator service (EVAL_STREAM work queue)."""

        async def pub() -> None:
            try:
                await self.broker.publish(req, subjects.EVAL_RUN, stream=subjects.EVAL_STREAM,
                                          headers={"Nats-Msg-Id": req.run_id}, timeout=10.0)
            except nats.js.errors.NoStreamResponseError as exc:
                raise BusError("the EVAL stream does not exist: is the stack up (`syndicate up`)?") from exc

        self._run(pub(), timeout=15)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.broker.stop(), timeout=10)
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
