"""The containerised stack end to end (`make compose-test`): the images of `make images`
under podman-compose with the local stand-ins (nats-server from PyPI, rotel for Jaeger,
the embedded Qdrant engine for the Qdrant server). A code task from the host's CLI
completes and its whole trace reaches the collector; every agent container runs on the
cores the placement plan gave it; a kill -9 of the coder container mid-task loses
nothing; the sandbox says which isolation tier it reaches inside its container."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from shared.contracts import TaskSubmit
from shared.registry import service_for_role
from shared.settings import Settings, parse_cpus
from shared.task_client import TaskClient, TaskFollow
from syndicate.cli.connect import connected_broker, health_replies

from .conftest import Stack, collector_spans

pytestmark = pytest.mark.compose

CODE_TASK = "Write a Python function is_prime(n) that returns True when the integer n is a prime number."


def cgroup_cpus(pid: int) -> str:
    """The cpuset of process ``pid``'s cgroup, read on the host (cgroup v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuset" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/cpuset{path}/cpuset.cpus").read_text().strip()
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path(f"/sys/fs/cgroup{path}/cpuset.cpus.effective").read_text().strip()
    raise AssertionError(f"no cpuset cgroup for pid {pid}")


def test_every_service_is_healthy(stack: Stack) -> None:
    print("seconds until healthy:", json.dumps({k: round(v) for k, v in stack.ready.items()}))
    for service in stack.ready:
        image = stack.inspect(service, "{{.ImageName}}")
        assert image.startswith("localhost/syndicate/"), (service, image)  # nothing came from a registry


def test_agents_run_on_their_planned_cpusets(stack: Stack) -> None:
    """Three places say it: the container's cgroup on the host, the same cgroup seen from
    inside, and the affinity the service pinned itself to (from SYNDICATE_CPUS)."""
    seen = {}
    for role, entry in stack.plan["agents"].items():
        service = service_for_role(role)
        assert service is not None
        want = sorted(entry["cpus"])
        pid = int(stack.inspect(service, "{{.State.Pid}}"))
        inside = stack.podman("exec", stack.container(service), "sh", "-c",
                              "cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpuset.cpus.effective; "
                              "grep -h Cpus_allowed_list /proc/[0-9]*/status").stdout.split()
        pinned = {tuple(parse_cpus(v)) for k, v in zip(inside[1::2], inside[2::2], strict=True) if k == "Cpus_allowed_list:"}
        seen[service] = {"host cgroup": cgroup_cpus(pid), "inside": inside[0], "processes": sorted(pinned)}
        assert parse_cpus(seen[service]["host cgroup"]) == want, seen[service]
        assert parse_cpus(inside[0]) == want, seen[service]
        assert pinned == {tuple(want)}, seen[service]  # every process of the container, the service's own too
    print("cpusets:", json.dumps(seen))


def test_a_code_task_from_the_host_cli_completes_with_its_whole_trace(stack: Stack) -> None:
    t0 = time.monotonic()
    out = stack.host_cli("submit", "--kind", "code", CODE_TASK, "--json", "--timeout", "900")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"code task {result['task_id']}: {result['status']} in {time.monotonic() - t0:.0f}s")
    assert result["status"] == "done", result
    assert "def is_prime" in (result.get("code") or result.get("answer", ""))
    trace_id = result["trace_id"]
    assert len(trace_id) == 32

    # Whole: every span's parent is in the trace, one root (the CLI's submit), and the
    # hops of a code task are all there. Services export in batches: wait for them.
    deadline, spans = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        log = stack.podman("logs", stack.container("jaeger"), check=False)
        spans = [s for s in collector_spans(log.stdout + log.stderr) if s.get("trace") == trace_id]
        services = {s["service"] for s in spans}
        ids = {s["id"] for s in spans}
        orphans = [s for s in spans if s.get("parent") and s["parent"] not in ids]
        if {"cli", "router", "coder-agent", "code-sandbox"} <= services and not orphans:
            break
        time.sleep(3)
    roots = [s for s in spans if not s.get("parent")]
    print(f"trace {trace_id}: {len(spans)} spans from {sorted({s['service'] for s in spans})}")
    assert [(r["service"], r["name"]) for r in roots] == [("cli", "syndicate submit")], roots
    assert {"cli", "router", "coder-agent", "code-sandbox"} <= {s["service"] for s in spans}
    assert not [s for s in spans if s.get("parent") and s["parent"] not in {x["id"] for x in spans}]


def test_killing_the_coder_container_mid_task_loses_nothing(stack: Stack) -> None:
    """kill -9 of the coder container's init while it generates: the restart policy brings
    it back, JetStream redelivers the step, and the task ends done with one result."""
    restarts_before = int(stack.inspect("coder-agent", "{{.RestartCount}}") or 0)

    came_back: list[bool] = []

    async def restarted(follow: TaskFollow) -> None:
        """Stop following when the restart policy does not bring the coder back."""
        for _ in range(60):
            await asyncio.sleep(3)
            if int(stack.inspect("coder-agent", "{{.RestartCount}}") or 0) > restarts_before:
                came_back.append(True)
                return
        came_back.append(False)
        follow.interrupt()

    async def scenario() -> tuple[str, float, list[str]]:
        async with connected_broker(Settings(nats_url=stack.nats_url)) as broker:
            client = TaskClient(broker)
            task = TaskSubmit(kind="code", text=CODE_TASK.replace("is_prime", "is_even"), timeout_s=900)
            follow = await client.submit(task)
            events: list[str] = []
            killed_at = 0.0
            watchdog = None
            try:
                async for event in follow:
                    events.append(f"{event.type}:{event.step or ''}:{event.status or ''}")
                    if not killed_at and event.type == "token":
                        pid = stack.inspect("coder-agent", "{{.State.Pid}}")
                        os.kill(int(pid), 9)  # the container's init: everything in it dies
                        killed_at = time.monotonic()
                        watchdog = asyncio.create_task(restarted(follow))
            finally:
                await follow.close()
                if watchdog is not None:
                    watchdog.cancel()
            assert killed_at, f"the coder never generated: {events[-10:]}"
            assert not came_back or came_back[0], "the coder container was not restarted within 180 s"
            assert follow.result is not None
            state = await client.state(task.task_id)
            assert state is not None
            return follow.result.status, time.monotonic() - killed_at, [s.status for s in state.steps]

    status, after_kill_s, steps = asyncio.run(scenario())
    print(f"task ended {status} {after_kill_s:.0f}s after the kill; steps {steps}")
    assert status == "done", steps
    assert int(stack.inspect("coder-agent", "{{.RestartCount}}")) > restarts_before  # restart: unless-stopped
    assert stack.healthy("coder-agent")


def test_the_sandbox_reports_its_isolation_tier(stack: Stack) -> None:
    replies = asyncio.run(health_replies(stack.nats_url, wait_s=2.0))
    sandbox = [r for r in replies if r.service == "code-sandbox"]
    assert sandbox, [r.service for r in replies]
    details = sandbox[0].details
    print("code-sandbox isolation in its container:", json.dumps(details))
    assert str(details.get("isolation", "")).split()[0] in ("full", "namespaces"), details
