"""The evaluator's bus calls, usable from the synchronous runner: programs to code-sandbox
(SANDBOX_EXEC), tasks to the running syndicate (TASK_SUBMIT, answer from the task's events
and the task-state KV), and remote eval jobs (EVAL_RUN).

``BusClient`` owns a nats-py connection on an event loop in a background thread and exposes
blocking methods, so llama.cpp scoring (blocking C calls) and bus waits never share a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from pydantic import BaseModel

from shared import subjects
from shared.contracts import (
    FINAL_STATUSES,
    ErrorReply,
    EvalRunRequest,
    ExecRequest,
    ExecResult,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskSubmit,
)
from shared.errors import BusError, DeadlineExceeded, error_from_code
from shared.settings import nats_servers, url_credentials

T = TypeVar("T", bound=BaseModel)


def parse_reply(data: bytes, reply_type: type[T]) -> T:
    """A typed reply, or the SyndicateError an ErrorReply stands for."""
    obj = json.loads(data)
    if isinstance(obj, dict) and "error" in obj and set(obj) <= {"version", "error"}:
        err = ErrorReply.model_validate(obj).error
        raise error_from_code(err.code, err.message, err.detail)
    return reply_type.model_validate(obj)


class BusClient:
    """Blocking facade over one NATS connection (call ``close()`` when done)."""

    def __init__(self, url: str | list[str], *, connect_timeout_s: float = 5.0) -> None:
        """``url``: one URL or ``Settings.nats_servers`` (a cluster's nodes, with credentials)."""
        servers = nats_servers(url) if isinstance(url, str) else url
        where = ", ".join(s.rsplit("@", 1)[-1] for s in servers)  # never print a password
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eval-bus", daemon=True)
        self._thread.start()
        try:
            self.nc: nats.NATS = self._run(nats.connect(
                servers, **url_credentials(servers), name="evaluator-client", connect_timeout=max(1, int(connect_timeout_s)),
                max_reconnect_attempts=3, allow_reconnect=True,
            ), timeout=connect_timeout_s + 5)
        except Exception as exc:
            self._stop()
            raise BusError(f"cannot reach NATS at {where}: {exc} (is the stack up? `syndicate up`)") from exc
        self.js = self.nc.jetstream()

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
        """Submit a task to the syndicate and wait for its final TaskResult.

        The live event stream gives the result at once; the task-state KV is polled too, so
        a missed core-NATS event (best effort by design) never hangs the run.
        """
        return self._run(self._run_task(task, wait_s or task.timeout_s + 30))

    async def _run_task(self, task: TaskSubmit, wait_s: float) -> TaskResult:
        done: asyncio.Future[TaskResult] = self._loop.create_future()

        async def on_event(msg: Any) -> None:
            try:
                ev = TaskEvent.model_validate_json(msg.data)
            except ValueError:
                return
            if ev.type == "result" and ev.result is not None and not done.done():
                done.set_result(ev.result)

        sub = await self.nc.subscribe(subjects.task_events(task.task_id), cb=on_event)
        try:
            await self.js.publish(subjects.TASK_SUBMIT, task.model_dump_json().encode(),
                                  headers={"Nats-Msg-Id": task.task_id})
            kv = await self.js.key_value(subjects.TASK_STATE_BUCKET)
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                try:
                    return await asyncio.wait_for(asyncio.shield(done), timeout=1.0)
                except TimeoutError:
                    pass
                if (result := await _final_from_kv(kv, task.task_id)) is not None:
                    return result
            raise DeadlineExceeded(f"task {task.task_id} gave no result within {wait_s:.0f}s")
        finally:
            await sub.unsubscribe()

    def task_state(self, task_id: str) -> TaskState | None:
        """The router's record of a task (route, steps), or None."""

        async def get() -> TaskState | None:
            kv = await self.js.key_value(subjects.TASK_STATE_BUCKET)
            try:
                entry = await kv.get(task_id)
            except Exception:
                return None
            return TaskState.model_validate_json(entry.value) if entry and entry.value else None

        return self._run(get(), timeout=15)

    # --- remote eval jobs ---------------------------------------------------------------
    def publish_eval(self, req: EvalRunRequest) -> None:
        """Queue an evaluation for the evaluator service (EVAL_STREAM work queue)."""

        async def pub() -> None:
            try:
                await self.js.publish(subjects.EVAL_RUN, req.model_dump_json().encode(),
                                      headers={"Nats-Msg-Id": req.run_id})
            except nats.js.errors.NoStreamResponseError as exc:
                raise BusError("the EVAL stream does not exist: is the stack up (`syndicate up`)?") from exc

        self._run(pub(), timeout=15)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.nc.drain(), timeout=5)
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _final_from_kv(kv: Any, task_id: str) -> TaskResult | None:
    try:
        entry = await kv.get(task_id)
    except Exception:  # not written yet
        return None
    if entry is None or entry.value is None:
        return None
    state = TaskState.model_validate_json(entry.value)
    if state.status in FINAL_STATUSES and state.result is not None:
        return state.result
    if state.status in FINAL_STATUSES:
        return TaskResult(task_id=task_id, status=state.status, kind=state.task.kind)
    return None
