"""The bus itself fails: nats-server killed and restarted on the same store while tasks
flow; then a three-node NATS cluster on loopback (streams and the task bucket replicated
x3) losing a node mid-flow. Services reconnect / fail over on their own; no task is lost,
none ends twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from shared import subjects
from shared.contracts import TaskSubmit
from tests.conftest import WAIT_S, Services

from .conftest import FAST_ENV, REPLY_CODE, Client, NatsCluster, assert_exactly_one_result

pytestmark = pytest.mark.integration

SPINE = ["router", "coder-agent", "reasoner-agent", "code-sandbox"]
MODULES = {"router": "services.router", "coder-agent": "services.coder_agent",
           "reasoner-agent": "services.reasoner_agent", "code-sandbox": "services.code_sandbox"}


def task_for(prefix: str, i: int) -> TaskSubmit:
    if i % 2:
        return TaskSubmit(task_id=f"t-{prefix}-{i}", kind="code", text="Write square(x).", timeout_s=300)
    return TaskSubmit(task_id=f"t-{prefix}-{i}", kind="reason", text="What is a square?", timeout_s=300)


async def flow(client: Client, prefix: str, faults, every_s: float = 0.3) -> list[str]:  # type: ignore[no-untyped-def]
    """Submit a task every ``every_s`` while ``faults()`` runs; the ids submitted."""
    submitted: list[str] = []
    stop = asyncio.Event()

    async def feed() -> None:
        i = 0
        while not stop.is_set():
            task = task_for(prefix, i)
            await client.submit(task)
            submitted.append(task.task_id)
            i += 1
            await asyncio.sleep(every_s)

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.sleep(1.5)
        await faults()
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await feeder
    return submitted


def kill_and_await_restart(stack, index: int) -> None:  # type: ignore[no-untyped-def]
    """kill -9 NATS node ``index`` of the stack and wait until the supervisor restarted it."""
    pid = stack.record()["nats_nodes"][index]["pid"]
    stack.kill_nats(index)
    end = time.monotonic() + WAIT_S
    while stack.record()["nats_nodes"][index]["pid"] == pid:
        assert time.monotonic() < end, "the supervisor did not restart nats-server"
        time.sleep(0.1)


async def replicas(client: Client) -> dict[str, int]:
    assert client.nc is not None
    js = client.nc.jetstream()
    names = [subjects.TASKS_STREAM, subjects.JOBS_STREAM, subjects.DEAD_LETTER_STREAM, f"KV_{subjects.TASK_STATE_BUCKET}"]
    return {n: (await js.stream_info(n)).config.num_replicas for n in names}


def test_nats_restart_on_the_same_store(make_stack, tmp_path) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([REPLY_CODE]))
    stack = make_stack(SPINE, {"SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": "0.01",
                               "SYNDICATE_ACK_WAIT_S": "3"})

    async def scenario() -> None:
        client = await Client().connect(stack.settings("cli").nats_servers)

        async def faults() -> None:
            for _ in range(2):  # kill -9 the server twice; the supervisor restarts it
                await asyncio.to_thread(kill_and_await_restart, stack, 0)
                await asyncio.sleep(3.0)

        submitted = await flow(client, "restart", faults)
        states = await client.wait_final(submitted)
        assert Counter(s.status for s in states.values()) == {"done": len(submitted)}
        assert_exactly_one_result(states, client)
        await client.close()

    asyncio.run(scenario())
    assert stack.record()["nats_nodes"][0]["restarts"] == 2
    for name in SPINE:  # they reconnected: nobody had to restart them
        assert stack.record()["services"][name]["restarts"] == 0, stack.log(name)[-1500:]


def test_cluster_node_loss_fails_over(nats_cluster: NatsCluster, tmp_path) -> None:
    """Three nodes; each node in turn is killed and stays down while tasks flow: every
    service (connected to one of them) fails over to the others."""
    state = tmp_path / "state"
    state.mkdir()
    services = Services(nats_cluster, state)  # type: ignore[arg-type]  # SYNDICATE_NATS_URL: all three URLs
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([REPLY_CODE]))
    env = {**FAST_ENV, "SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": "0.01",
           "SYNDICATE_ACK_WAIT_S": "3", "SYNDICATE_STREAM_REPLICAS": "3"}
    try:
        for name in SPINE:
            services.start(name, MODULES[name], **env)
        services.wait_ready(SPINE)

        async def scenario() -> None:
            client = await Client().connect([n.url for n in nats_cluster.nodes])
            assert set((await replicas(client)).values()) == {3}

            async def faults() -> None:
                for i in range(3):
                    await asyncio.to_thread(nats_cluster.kill, i)
                    await asyncio.sleep(6.0)  # down, while tasks flow through the other two
                    await asyncio.to_thread(nats_cluster.start, i)
                    await asyncio.sleep(4.0)  # back, catching up its replicas

            submitted = await flow(client, "cluster", faults, every_s=0.4)
            states = await client.wait_final(submitted)
            assert Counter(s.status for s in states.values()) == {"done": len(submitted)}
            assert_exactly_one_result(states, client)
            await client.close()

        asyncio.run(scenario())
        for name, proc in services.procs.items():
            assert proc.poll() is None, f"{name} died:\n{services.log(name)[-2000:]}"
    finally:
        services.stop()


def test_up_with_a_nats_cluster_of_three(make_stack, tmp_path) -> None:
    """`syndicate up --nats-cluster 3`: three nodes with routes, replicated streams, users
    and permissions; a node killed under it is restarted and the stack keeps serving."""
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([REPLY_CODE]))
    stack = make_stack(["router", "reasoner-agent"], {"SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ACK_WAIT_S": "3"},
                       nats_cluster=3, via_cli=True)
    record = stack.record()
    assert len(record["nats_nodes"]) == 3 and record["auth"] is True
    assert len(record["nats_url"].split(",")) == 3
    status = json.loads(stack.cli("status", "--json").stdout)
    assert len(status["nats_nodes"]) == 3

    async def scenario() -> None:
        client = await Client().connect(stack.settings("cli").nats_servers)
        assert set((await replicas(client)).values()) == {3}
        first = task_for("up3", 0)
        await client.submit(first)
        stack.kill_nats(1)
        second = task_for("up3", 2)
        await client.submit(second)
        states = await client.wait_final([first.task_id, second.task_id])
        assert {s.status for s in states.values()} == {"done"}
        assert client.nc is not None and client.nc._server_info.get("cluster") == "syndicate"
        await client.close()

    asyncio.run(scenario())
    end = time.monotonic() + WAIT_S
    while stack.record()["nats_nodes"][1]["restarts"] < 1 and time.monotonic() < end:
        time.sleep(0.2)
    assert stack.record()["nats_nodes"][1]["restarts"] == 1
    out = stack.cli("submit", "--kind", "reason", "What is a square?", "--json")
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["status"] == "done", out.stderr
    for name in ("router", "reasoner-agent"):  # failing over to a node they only heard of, still as themselves
        assert "authorization violation" not in stack.log(name).lower(), stack.log(name)[-2000:]
