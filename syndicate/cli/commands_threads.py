"""``syndicate thread`` and ``syndicate review``: conversations and a person's decision on
a task that waits for one (``submit --continue`` and ``submit --review`` start them)."""

from __future__ import annotations

import asyncio
import getpass
from typing import Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.syntax import Syntax

from shared.contracts import ThreadRecord, ThreadTurn
from shared.errors import NotFound, SyndicateError
from shared.task_client import TaskClient
from syndicate.cli.commands_tasks import _print_result, exit_code, stream_until_decision
from syndicate.cli.connect import cli_settings, connected_broker

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("thread")(thread_cmd)
    app.command()(review)


def thread_cmd(
    task_id: str = typer.Argument(..., help="A task of the thread (or the thread's id)."),
    json_out: bool = typer.Option(False, "--json", help="The thread record as one JSON object."),
    full: bool = typer.Option(False, "--full", help="Whole answers and programs (else the last program and excerpts)."),
) -> None:
    """Show a conversation: each turn's request, what came of it, and the checks it held."""
    record = asyncio.run(_thread(task_id))
    if record is None:
        err_console.print(f"[red]no thread for {task_id}[/] (unknown, past the retention period, or a task nobody "
                          f"continued yet: syndicate submit --continue {task_id} TEXT)")
        raise typer.Exit(2)
    if json_out:
        print(record.model_dump_json())
        return
    print_thread(record, full)


async def _thread(key: str) -> ThreadRecord | None:
    async with connected_broker(cli_settings()) as broker:
        return await TaskClient(broker).thread(key)


def print_thread(record: ThreadRecord, full: bool = False) -> None:
    turns = record.turns
    console.rule(f"thread {record.thread_id} · {len(turns)} turn{'s' * (len(turns) != 1)}")
    number = {t.task_id: n for n, t in enumerate(turns, 1)}
    last_code = max((n for n, t in enumerate(turns) if t.code), default=-1)
    for n, turn in enumerate(turns):
        branch = ""
        if turn.follows and n and turns[n - 1].task_id != turn.follows:
            branch = f" (continues turn {number.get(turn.follows, turn.follows)})"
        colour = {"done": "green", "input_required": "yellow"}.get(turn.status, "red" if turn.finished_at else "cyan")
        console.print(f"\n[bold]turn {n + 1}[/] · {turn.task_id} · {turn.agent or turn.kind} · "
                      f"[{colour}]{turn.status}[/]{branch}")
        console.print(f"[bold]>[/] {turn.text if full else _excerpt(turn.text, 600)}")
        if turn.code and (full or n == last_code):
            console.print(Syntax(turn.code, "python", theme="ansi_dark", background_color="default"))
        elif turn.answer:
            console.print(Markdown(turn.answer if full else _excerpt(_prose(turn), 800)))
        if turn.checks:
            carried = sum(1 for c in turn.checks if c.turn and c.turn != turn.task_id)
            console.print(f"[dim]checks held: {len(turn.checks)}" + (f" ({carried} from earlier turns)" if carried else "") + "[/]")
    console.print(f"\n[dim]continue it: syndicate submit --continue {turns[-1].task_id} TEXT[/]")


def _prose(turn: ThreadTurn) -> str:
    """A code turn's answer without its code block (the program is shown on its own)."""
    if turn.code and "```" in turn.answer:
        return turn.answer.split("```")[-1].strip() or turn.answer
    return turn.answer


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def review(
    task_id: str = typer.Argument(..., help="A task waiting in input_required."),
    approve: bool = typer.Option(False, "--approve", help="Accept the proposed answer: the task ends done."),
    revise: str | None = typer.Option(None, "--revise", metavar="FEEDBACK",
                                      help="One more round with this feedback; the task then waits again."),
    reject: bool = typer.Option(False, "--reject", help="Refuse the answer: the task ends rejected."),
    reason: str = typer.Option("", help="With --reject: why (kept with the task)."),
    reviewer: str = typer.Option("", help="Who decides (default: your user name)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Send the decision and return."),
) -> None:
    """Decide a task submitted with --review that waits for you (status input_required)."""
    chosen = [name for name, on in (("approve", approve), ("revise", revise is not None), ("reject", reject)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --approve, --revise FEEDBACK, --reject")
    feedback = revise if revise is not None else reason
    try:
        out = asyncio.run(_review(task_id, chosen[0], feedback or "", reviewer or _user(), wait=not no_wait,
                                  stream=not json_out))
    except SyndicateError as exc:
        err_console.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(2) from exc
    if no_wait:
        console.print(f"{chosen[0]} sent for {task_id}")
        return
    _print_result(out, json_out)
    raise typer.Exit(exit_code(out))


async def _review(task_id: str, decision: str, feedback: str, reviewer: str, *, wait: bool,
                  stream: bool) -> dict[str, Any]:
    async with connected_broker(cli_settings()) as broker:
        client = TaskClient(broker)
        if not wait:
            await client.review(task_id, decision, feedback, reviewer=reviewer)
            return {}
        state = await client.state(task_id)
        if state is None:
            raise NotFound(f"no task {task_id} (unknown, or past the retention period)")
        follow = await client.follow(state)  # before the decision: no event of its outcome is missed
        try:
            state = await client.review(task_id, decision, feedback, reviewer=reviewer)
            if stream:
                err_console.print(f"[dim]{decision} sent for task {task_id} (round {state.review[-1].n})[/]")
            return await stream_until_decision(follow, stream)
        finally:
            await follow.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""

