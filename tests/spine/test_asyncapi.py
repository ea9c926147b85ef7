"""docs/asyncapi.json is the bus as the code declares it: generated from every service's
broker and the contracts (python -m syndicate.asyncapi --write), and stale when either
changes without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared import registry, subjects
from tests.conftest import REPO

DOCUMENT = REPO / "docs" / "asyncapi.json"


def check(document: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATE_", "OTEL_"))}
    env.update(SYNDICATE_STATE_DIR=str(state), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "syndicate.asyncapi", "--check", "--document", str(document)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_committed_document_is_what_the_code_generates(tmp_path: Path) -> None:
    out = check(DOCUMENT, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_stale_document_is_refused(tmp_path: Path) -> None:
    doc = json.loads(DOCUMENT.read_text())
    del doc["components"]["schemas"]["AgentJob"]["properties"]["agent"]  # as if the contract had changed
    stale = tmp_path / "asyncapi.json"
    stale.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    out = check(stale, tmp_path)
    assert out.returncode == 1 and "stale" in out.stderr


def test_the_document_names_every_agent_and_the_task_flow() -> None:
    doc = json.loads(DOCUMENT.read_text())
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert set(registry.job_subjects()) | {subjects.TASK_SUBMIT, subjects.STEP_RESULT, subjects.task_events("*")} <= addresses
    assert doc["components"]["schemas"]["AgentJob"]["properties"]["agent"]["enum"] == list(registry.agent_names())
