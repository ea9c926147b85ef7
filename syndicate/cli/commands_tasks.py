"""``syndicate submit``, ``result``, ``trace`` and ``cancel``: tasks on the bus (threads
and reviews: commands_threads.py)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import typer
from opentelemetry import trace
from pydantic import ValidationError
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from shared import registry
from shared.bus import to_error_info
from shared.contracts import (
    FileIn,
    TaskEvent,
    TaskState,
    TaskSubmit,
    new_id,
)
from shared.errors import NotFound, Overloaded, SyndicateError, WrongState
from shared.task_client import TaskClient, TaskFollow
from shared.telemetry import current_trace_id, read_trace
from shared.trace_view import waterfall, without_create_spans
from syndicate.cli.connect import cli_settings, connected_broker

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(result)
    app.command("trace")(trace_cmd)
    app.command()(cancel)


def submit(
    text: str = typer.Argument(..., help="What to do, in words."),
    kind: str = typer.Option("auto", help="auto | code | reason"),
    agent: str | None = typer.Option(None, help=f"Straight to this agent, no routing ({', '.join(registry.agent_names())})."),
    file: list[Path] = typer.Option([], "--file", "-f", help="A file the task works on (repeatable)."),
    collection: str | None = typer.Option(None, help="Retrieve context from this collection."),
    timeout: float = typer.Option(600.0, help="Deadline in seconds; the task ends 'timeout' after it (a task "
                                             "waiting for review keeps it)."),
    follows: str | None = typer.Option(None, "--continue", metavar="TASK_ID",
                                       help="A follow-up: continue the thread of this earlier task (its request, answer, "
                                            "code and checks are the context; code is edited, its checks kept)."),
    review: bool = typer.Option(False, "--review", help="Pause before the final answer until you decide: "
                                                        "syndicate review TASK_ID --approve | --revise TEXT | --reject."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Print only the task id."),
    task_id: str | None = typer.Option(None, "--id", metavar="TASK_ID",
                                       help="The task's id, your own (letters, digits, - and _): a submit repeated "
                                            "with it is the same task, never a second one; the coder's samples are "
                                            "seeded from it. Default: a new random id."),
) -> None:
    """Publish a task to the syndicate and stream its progress and answer."""
    if kind not in ("auto", "code", "reason"):
        raise typer.BadParameter("kind must be auto, code or reason")
    try:
        files = [FileIn(path=str(p), content=p.read_text()) for p in file]
        task = TaskSubmit(kind=kind, text=text, files=files, collection=collection, timeout_s=timeout,  # type: ignore[arg-type]
                          agent=agent, follows=follows, review=review, task_id=task_id or new_id("t-"))
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except ValidationError as exc:  # a file or the whole task over its limit
        err_console.print(f"[red]error:[/] {to_error_info(exc).message}")
        raise typer.Exit(2) from exc
    try:
        out = asyncio.run(_submit(task, wait=not no_wait, stream=not json_out))
    except Overloaded as exc:  # back-pressure: the queue is full, try again later
        err_console.print(f"[red]rejected:[/] {exc.message}")
        raise typer.Exit(EXIT_RETRY_LATER) from exc
    except SyndicateError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    if no_wait:
        print(task.task_id)
        return
    _print_result(out, json_out)
    raise typer.Exit(exit_code(out))


EXIT_RETRY_LATER = 75  # sysexits EX_TEMPFAIL: the syndicate refused the task for now (back-pressure)
EXIT_INPUT_REQUIRED = 3  # the task waits for your review (syndicate review TASK_ID ...)


def exit_code(out: dict[str, Any]) -> int:
    """0 done; 3 waiting for review; 75 refused for now (back-pressure); 1 anything else."""
    status = out.get("status")
    if status == "done":
        return 0
    if status == "input_required":
        return EXIT_INPUT_REQUIRED
    if status == "rejected" and (out.get("error") or {}).get("code") == Overloaded.code:
        return EXIT_RETRY_LATER
    return 1


async def _submit(task: TaskSubmit, *, wait: bool, stream: bool) -> dict[str, Any]:
    settings = cli_settings()
    tracer = trace.get_tracer("syndicate.cli")
    async with connected_broker(settings) as broker:
        with tracer.start_as_current_span("syndicate submit", attributes={"task.id": task.task_id, "task.kind": task.kind}):
            trace_id = current_trace_id()
            client = TaskClient(broker)
            if task.follows:
                await check_continuable(client, task.follows)
            follow = await client.submit(task)
            try:
                if not wait:
                    return {"task_id": task.task_id, "trace_id": trace_id}
                if stream:
                    err_console.print(f"[dim]task {task.task_id} submitted · trace {trace_id}[/]")
                return await stream_until_decision(follow, stream)
            finally:
                await follow.close()


async def check_continuable(client: TaskClient, task_id: str) -> None:
    """A follow-up continues a task that exists and has ended (NotFound, WrongState)."""
    state = await client.state(task_id)
    if state is None:
        raise NotFound(f"no task {task_id} to continue (unknown, or past the retention period)")
    if state.status not in ("done", "failed", "timeout", "cancelled", "rejected"):
        raise WrongState(f"task {task_id} has not ended yet (status {state.status}); continue it once it has")


async def stream_until_decision(follow: TaskFollow, stream: bool) -> dict[str, Any]:
    """Print the task's events until its result, or until it waits for a review (then the
    proposed result, status input_required)."""
    in_tokens = False
    while (event := await follow.next()) is not None:
        if event.type == "result" or event.status == "input_required":
            if in_tokens and stream:
                sys.stdout.write("\n")
            break
        if stream:
            in_tokens = _render(event, in_tokens)
    out = follow.result or follow.paused
    assert out is not None
    return out.model_dump(mode="json")


def _render(event: TaskEvent, in_tokens: bool) -> bool:
    if event.type == "token":
        sys.stdout.write(event.text)
        sys.stdout.flush()
        return True
    if in_tokens:
        sys.stdout.write("\n")
    label = f"[{event.step}] " if event.step else ""
    text = event.text or (event.status or "")
    err_console.print(f"[cyan]{label}[/][dim]{event.type}:[/] {text}", highlight=False)
    return False


def _print_result(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print(json.dumps(out))
        return
    status = out.get("status")
    colour = {"done": "yellow" if out.get("unverified") else "green", "input_required": "yellow"}.get(str(status), "red")
    shown = f"{status} (unverified)" if out.get("unverified") else status
    pause = f" · review round {out['review'][-1]['n']}" if status == "input_required" and out.get("review") else ""
    console.rule(f"[{colour}]{shown}[/] · task {out.get('task_id')}{pause}")
    if out.get("answer"):
        console.print(Markdown(out["answer"]))
    for v in out.get("tests") or []:
        console.print(f"sandbox [{v['name']}]: {v['status']} (exit {v['exit_code']}, {v['wall_s']:.2f}s, isolation {v['isolation'] or '-'})")
    for c in out.get("citations") or []:
        console.print(f"  source: {c['path']}:{c['start_line']}-{c['end_line']}")
    if out.get("error"):
        console.print(f"[red]{out['error']['code']}[/]: {out['error']['message']}")
    usage = out.get("usage") or {}
    if usage.get("output_tokens"):
        console.print(f"[dim]{usage.get('model')}: {usage.get('input_tokens')} in / {usage.get('output_tokens')} out tokens, {usage.get('seconds', 0):.1f}s[/]")
    held = [c for c in out.get("checks") or [] if c.get("turn")]
    if held:
        console.print(f"earlier checks: {sum(1 for c in held if c.get('held'))} of {len(held)} still hold")
    if out.get("thread_id"):
        console.print(f"[dim]thread {out['thread_id']} · syndicate thread {out['task_id']} · "
                      f"follow up: syndicate submit --continue {out['task_id']} TEXT[/]")
    if out.get("trace_id"):
        console.print(f"[dim]trace {out['trace_id']} · syndicate trace {out['task_id']}[/]")
    if status == "input_required":
        console.print(f"[yellow]waiting for your review:[/] syndicate review {out['task_id']} "
                      "--approve | --revise \"what to change\" | --reject")


def result(task_id: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Show the result (or current state) of a task submitted earlier."""
    state = asyncio.run(_load_state(task_id))
    if state is None:
        err_console.print(f"[red]no task {task_id}[/] (unknown, or past the retention period)")
        raise typer.Exit(2)
    if state.result is not None:
        _print_result(state.result.model_dump(mode="json"), json_out)
    else:
        out = {"task_id": task_id, "trace_id": state.trace_id, "status": state.status, "kind": state.task.kind,
               "answer": "", "steps": [s.model_dump(mode="json") for s in state.steps]}
        print(json.dumps(out)) if json_out else console.print(f"task {task_id}: {state.status} (steps: {', '.join(f'{s.agent}={s.status}' for s in state.steps)})")


async def _load_state(task_id: str) -> TaskState | None:
    async with connected_broker(cli_settings()) as broker:
        return await TaskClient(broker).state(task_id)


def cancel(task_id: str, reason: str = typer.Option("cancelled by user")) -> None:
    """Cancel a task: the router ends it 'cancelled' and its agent stops generating."""

    async def go() -> None:
        async with connected_broker(cli_settings()) as broker:
            await TaskClient(broker).cancel(task_id, reason)

    asyncio.run(go())
    console.print(f"cancel sent for {task_id}")


def trace_cmd(
    task_id: str,
    json_out: bool = typer.Option(False, "--json"),
    all_spans: bool = typer.Option(False, "--all", help="Also show the message 'create' spans."),
) -> None:
    """The task's spans as a waterfall (service, span, start offset, duration)."""
    settings = cli_settings()
    trace_id = task_id if re.fullmatch(r"[0-9a-f]{32}", task_id) else None
    if trace_id is None:
        state = asyncio.run(_load_state(task_id))
        if state is None or not state.trace_id:
            err_console.print(f"[red]no trace recorded for {task_id}[/]")
            raise typer.Exit(2)
        trace_id = state.trace_id
    spans = read_trace(settings.traces_dir, trace_id)
    if json_out:
        print(json.dumps(spans))
        return
    if not spans:
        where = settings.otlp_endpoint or settings.traces_dir
        err_console.print(f"no spans for trace {trace_id} in {where} (with OTLP export, open Jaeger's UI)")
        raise typer.Exit(1)
    print_waterfall(spans if all_spans else without_create_spans(spans))


def print_waterfall(spans: list[dict[str, Any]], width: int = 20) -> None:
    rows, total = waterfall(spans)
    total = total or 1e-9
    table = Table(title=f"trace {spans[0]['trace_id']} · {total * 1000:.0f} ms · {len(spans)} spans",
                  box=None, padding=(0, 1), header_style="bold")
    table.add_column("service", no_wrap=True, max_width=14, overflow="ellipsis")
    table.add_column("span", no_wrap=True, max_width=34, overflow="ellipsis")
    table.add_column("start s", justify="right", no_wrap=True)
    table.add_column("dur s", justify="right", no_wrap=True)
    table.add_column("timeline", no_wrap=True, min_width=width)
    for r in rows:
        a = min(width - 1, int(r.start_s / total * width))
        b = max(a + 1, int((r.start_s + r.duration_s) / total * width))
        bar = " " * a + "█" * (b - a)
        table.add_row(r.service, "  " * r.depth + r.label, f"{r.start_s:.3f}", f"{r.duration_s:.3f}", f"[cyan]{bar}[/]")
    console.print(table)
