"""``syndicate eval``: benchmark suites and users' own eval sets against bare models or through
the running syndicate, quantization ladders, reports.

The evaluation logic lives in shared/evaluation, which the evaluator service runs too
(imported lazily: ``syndicate --help`` must not load numpy or llama.cpp)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from shared.errors import SyndicateError

err = Console(stderr=True)
out = Console()

eval_app = typer.Typer(help="Evaluate models and the syndicate: quality vs speed, quantization ladders.",
                       no_args_is_help=True)


class RichProgress:
    """One bar per model with its running score and ETA (on stderr, so --json stays clean)."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[score]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def start(self, label: str, total: int, done: int) -> None:
        resumed = f" (resumed: {done} cached)" if done else ""
        self.tasks[label] = self.bar.add_task(f"{label}{resumed}", total=total, completed=done, score="")

    def advance(self, label: str, score: str) -> None:
        self.bar.update(self.tasks[label], advance=1, score=score)

    def finish(self, label: str) -> None:
        self.bar.refresh()


def _settings() -> Any:
    """Evaluator settings with the running local stack's NATS URL (like every CLI command)."""
    from shared.evaluation.settings import EvaluatorSettings
    from syndicate.stack_record import resolve_connection

    settings = EvaluatorSettings()
    return resolve_connection(settings)


def _csv_ints(value: str | None) -> list[int]:
    return [int(x) for x in value.split(",") if x.strip()] if value else []


@eval_app.command("run")
def run_cmd(
    suite: Annotated[str, typer.Argument(help="Built-in suite (humaneval, gsm8k, mmlu, arc-challenge, arc-easy, "
                                              "canterbury, alice, speed) or a .jsonl/.txt file")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Role (coder, router, ...), .gguf path, "
                                                    "quantized variant or cached file name; repeat to compare")] = None,
    suite_type: Annotated[str | None, typer.Option(help="code|qa|choice|text|speed (default: from the file)")] = None,
    limit: Annotated[int | None, typer.Option(help="First N items (text suites: N chunks)")] = None,
    through_agents: Annotated[bool, typer.Option("--through-agents", help="Submit each item as a task to the running syndicate")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write report.md, report.json, tradeoff.png here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object of per-model results")] = False,
    remote: Annotated[bool, typer.Option("--remote", help="Queue the run for the evaluator service (survives this CLI)")] = False,
    samples: Annotated[int, typer.Option(help="Samples per code problem (pass@k for k <= samples)")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy; samples > 1 default 0.8)")] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Generation limit per answer")] = 512,
    threads: Annotated[str | None, typer.Option(help="Thread counts, e.g. 1,2 (speed: one row each)")] = None,
    n_ctx: Annotated[int, typer.Option(help="Text suites: perplexity chunk length")] = 512,
    reference: Annotated[str | None, typer.Option(help="Text suites: KLD reference model (default: first --model)")] = None,
    prompt_style: Annotated[str, typer.Option(help="auto|chat|completion")] = "auto",
    agent_kind: Annotated[str, typer.Option(help="Through agents: task kind (auto lets the router route)")] = "auto",
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore cached per-item results")] = False,
    unsafe_local_exec: Annotated[bool, typer.Option("--unsafe-local-exec", hidden=True,
                                                    help="Run generated programs WITHOUT code-sandbox (measurement only)")] = False,
) -> None:
    """Score SUITE on the named models side by side (or through the agents)."""
    from shared.evaluation.runner import RunOptions

    settings = _settings()
    try:
        options = RunOptions(
            suite_type=suite_type, limit=limit, through_agents=through_agents, samples=samples, temperature=temperature,  # type: ignore[arg-type]
            max_tokens=max_tokens, threads=_csv_ints(threads), n_ctx=n_ctx, reference=reference,
            prompt_style=prompt_style, agent_kind=agent_kind, fresh=fresh, unsafe_local_exec=unsafe_local_exec,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        err.print(f"[red]bad option:[/] {exc}")
        raise typer.Exit(2) from None
    if unsafe_local_exec:
        err.print("[bold red]WARNING: --unsafe-local-exec runs model-written programs on this machine WITHOUT "
                  "code-sandbox. The report is stamped 'local-UNSANDBOXED'.[/]")
    if remote:
        _submit_remote(settings, suite, model or [], options, as_json)
        return
    if suite.endswith((".jsonl", ".txt", ".gz")) and not Path(suite).exists():
        err.print(f"[red]no such file:[/] {suite}")
        raise typer.Exit(2)
    from shared.evaluation.jobs import pin_to_placement, run_job
    from shared.evaluation.report import summary

    pin_to_placement(settings)
    started = time.time()
    try:
        with RichProgress(err) as progress:
            result, paths = run_job(settings, suite, model or [], options, out_dir, progress)
    except SyndicateError as exc:
        err.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: finished items are cached; run the same command again to resume[/]")
        raise typer.Exit(130) from None
    _print_table(result)
    for kind, p in paths.items():
        err.print(f"{kind}: {p}")
    err.print(f"took {time.time() - started:.0f}s")
    if as_json:
        sys.stdout.write(json.dumps(summary(result)) + "\n")


def _print_table(result: Any) -> None:
    from shared.evaluation.report import quality_columns

    t = Table(title=f"{result.suite} ({result.type}, {result.n_items} items)"
              + (f" — programs ran in {result.executor}" if result.executor else ""))
    cols = quality_columns(result)
    for c in ["model", "quant", "size MB", *cols, "gen tok/s", "prompt tok/s", "TTFT s", "n"]:
        t.add_column(c, justify="left" if c in ("model", "quant") else "right")
    for m in result.models:
        rows = m.per_threads or [None]
        for row in rows:
            sp = row or m.speed
            label = m.label + (f" ({int(row['threads'])} thr)" if row else "")
            t.add_row(label, m.quant, f"{m.size_bytes / 1e6:.0f}" if m.size_bytes else "–",
                      *(f"{m.metrics[c]:.4g}" if c in m.metrics else "–" for c in cols),
                      *(f"{sp[k]:.3g}" if sp.get(k) else "–" for k in ("gen_tok_s", "prompt_tok_s", "ttft_s")), str(m.n))
    err.print(t)


def _submit_remote(settings: Any, suite: str, models: list[str], options: Any, as_json: bool) -> None:
    from shared.contracts import EvalRunRequest
    from shared.evaluation.connection import BusClient

    p = Path(suite)
    if p.is_file():  # the service may run elsewhere: ship the path as absolute
        suite = str(p.resolve())
    req = EvalRunRequest(suite=suite, models=models, limit=options.limit,
                         options=options.model_dump(exclude_defaults=True))
    try:
        with BusClient(settings, name="cli") as bus:
            bus.publish_eval(req)
    except SyndicateError as exc:
        err.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from None
    run_dir = settings.eval_dir / req.run_id
    err.print(f"queued [bold]{req.run_id}[/]; the evaluator service writes the report to {run_dir} "
              f"(`syndicate eval runs` shows progress)")
    if as_json:
        sys.stdout.write(json.dumps({"run_id": req.run_id, "report_dir": str(run_dir)}) + "\n")


@eval_app.command("runs")
def runs_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Remote evaluation runs and their status (from the state dir)."""
    from shared.evaluation.settings import EvaluatorSettings

    base = EvaluatorSettings().eval_dir
    rows = []
    for p in sorted(base.glob("ev-*/status.json"), key=lambda p: p.stat().st_mtime):
        rows.append({"run_id": p.parent.name, **json.loads(p.read_text())})
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    t = Table("run", "suite", "status", "done", "report")
    for r in rows:
        t.add_row(r["run_id"], r.get("suite", ""), r.get("status", ""), f"{r.get('done', 0)}/{r.get('total', '?')}",
                  str(Path(r.get("report_dir", "")) / "report.md") if r.get("status") == "done" else r.get("error", ""))
    out.print(t)


@eval_app.command("suites")
def suites_cmd() -> None:
    """Built-in suites and the JSONL formats for your own."""
    from shared.evaluation import suites

    out.print(suites.describe_builtins())
    out.print(suites.__doc__ or "")


@eval_app.command("quantize")
def quantize_cmd(
    source: Annotated[Path, typer.Argument(help="Source GGUF (F32/F16/BF16 for an honest ladder)")],
    types: Annotated[str, typer.Option(help="Comma-separated target types")] = "Q8_0,Q5_K_M,Q4_K_M,Q3_K_M",
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Where variants go (default: the model cache)")] = None,
    allow_requantize: Annotated[bool, typer.Option("--allow-requantize",
                                                   help="Quantize an already-quantized source (labelled as such)")] = False,
    threads: Annotated[int | None, typer.Option(help="Quantization threads")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a quantization ladder with llama.cpp's quantize API and register the variants."""
    from shared.evaluation.quantize import make_ladder
    from shared.evaluation.settings import EvaluatorSettings

    settings = EvaluatorSettings()
    try:
        made = make_ladder(source, [t.strip() for t in types.split(",") if t.strip()], out_dir or settings.quant_dir,
                           allow_requantize=allow_requantize, threads=threads, registry_dir=settings.quant_dir,
                           say=lambda s: err.print(s))
    except SyndicateError as exc:
        err.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from None
    t = Table("label", "type", "size MB", "from", "seconds", "path")
    for v in made:
        t.add_row(v.label, v.type, f"{v.size_bytes / 1e6:.1f}", v.source_type, f"{v.seconds:.1f}", str(v.path))
    err.print(t)
    err.print("compare them: syndicate eval run alice " + " ".join(f"--model {v.label}" for v in made))
    if as_json:
        sys.stdout.write(json.dumps([v.model_dump(mode="json") for v in made]) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


if __name__ == "__main__":  # python -m syndicate.cli.commands_eval ... (works before the full CLI is assembled)
    root = typer.Typer(no_args_is_help=True)
    register(root)
    root()
