"""`syndicate deploy ...`: generate the deployment files that depend on this host or secret.

- ``deploy cpus --plan PLAN.json``: compose override pinning each container to the
  placement plan's cores (``syndicate topology --json > plan.json`` makes the plan).
- ``deploy credentials --out FILE``: random NATS passwords, one per service (for
  compose's ``.env`` or the k8s overlay's ``nats-credentials.env``).
- ``deploy nats-auth``: the NATS users and permissions, rendered from shared/registry.py.
- ``deploy manifests``: every file generated from the service registry (NATS users,
  compose.yaml's services, the Kubernetes manifests): checked, or rewritten with --write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import REPO_ROOT
from syndicate import deploy, generated

NATS_AUTH_FILES = (REPO_ROOT / "infra" / "nats" / "auth.conf", REPO_ROOT / "k8s" / "base" / "nats" / "auth.conf")

deploy_app = typer.Typer(help="Generate deployment files (compose cpusets, NATS users, credentials).", no_args_is_help=True)


@deploy_app.command("cpus")
def cpus(
    plan: Annotated[str, typer.Option("--plan", help="placement plan JSON ('-' = stdin), from `syndicate topology --json`")],
) -> None:
    """Print a compose override (cpuset + SYNDICATE_CPUS per container) for the plan."""
    text = sys.stdin.read() if plan == "-" else Path(plan).read_text()
    try:
        typer.echo(deploy.render_compose_cpus(json.loads(text)), nl=False)
    except (ValueError, KeyError) as exc:
        typer.echo(f"bad placement plan: {exc}", err=True)
        raise typer.Exit(2) from exc


@deploy_app.command("credentials")
def credentials(
    out: Annotated[Path, typer.Option("--out", help="env file, e.g. .env or k8s/overlays/epyc/nats-credentials.env")],
    force: Annotated[bool, typer.Option("--force", help="replace an existing file (rotates every password)")] = False,
) -> None:
    """Write fresh random NATS passwords (one per service and the CLI) to an env file."""
    if out.exists() and not force:
        typer.echo(f"{out} exists; keeping it (use --force to rotate the passwords)", err=True)
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(deploy.credentials_env())
    out.chmod(0o600)
    typer.echo(f"wrote {out}")


@deploy_app.command("nats-auth")
def nats_auth(
    write: Annotated[bool, typer.Option("--write", help="rewrite infra/nats/auth.conf and k8s/base/nats/auth.conf")] = False,
) -> None:
    """Print (or --write) the NATS authorization block generated from shared/registry.py."""
    text = deploy.render_nats_auth()
    if not write:
        typer.echo(text, nl=False)
        return
    for path in NATS_AUTH_FILES:
        path.write_text(text)
        typer.echo(f"wrote {path}")


@deploy_app.command("manifests")
def manifests(
    write: Annotated[bool, typer.Option("--write", help="rewrite the stale files")] = False,
) -> None:
    """Check (or --write) every deployment file generated from shared/registry.py."""
    if write:
        for path in generated.write_files(REPO_ROOT):
            typer.echo(f"wrote {path.relative_to(REPO_ROOT)}")
        return
    stale = generated.stale_files(REPO_ROOT)
    for path in stale:
        typer.echo(f"stale: {path.relative_to(REPO_ROOT)}", err=True)
    if stale:
        typer.echo("run `syndicate deploy manifests --write`", err=True)
        raise typer.Exit(1)
    typer.echo("every generated deployment file matches shared/registry.py")


def register(app: typer.Typer) -> None:
    """Attach the ``deploy`` command group to the main CLI."""
    app.add_typer(deploy_app, name="deploy")
