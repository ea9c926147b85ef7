"""Container healthcheck: is SERVICE answering on the bus?

    python -m shared.health SERVICE     (or SYNDICATE_SERVICE=SERVICE python -m shared.health)

Broadcasts one HealthPing on ``syndicate.health.ping`` with a reply inbox, collects the
replies for ``--wait`` seconds and exits 0 as soon as an instance of SERVICE reports
``ready`` or ``degraded``; 1 otherwise (NATS unreachable, no reply, or only
``starting``/``stopping``). Uses only nats-py and the contracts, so it starts fast enough
for a probe every few seconds. Compose, the Dockerfile and Kubernetes probes call it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import nats
from pydantic import ValidationError

from shared import subjects
from shared.contracts import HealthPing, HealthReply
from shared.settings import Settings, nats_servers

HEALTHY = frozenset({"ready", "degraded"})


async def _quiet(_: Exception) -> None:
    """nats-py logs every failed connect with a traceback; the exit code says enough."""


async def probe(url: str | list[str], service: str, wait_s: float = 1.0) -> HealthReply | None:
    """The first healthy reply from an instance of ``service``, or None (``url``: one URL,
    a comma-separated cluster list or a list)."""
    if isinstance(url, str):
        url = nats_servers(url)
    # Two quick attempts at most: a probe must fail fast, not wait for the bus to come back.
    nc = await nats.connect(
        url, connect_timeout=wait_s, allow_reconnect=False, max_reconnect_attempts=1,
        reconnect_time_wait=0.1, error_cb=_quiet,
    )
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except TimeoutError:
                break
            try:
                reply = HealthReply.model_validate_json(msg.data)
            except ValidationError:
                continue  # another version or a stray message: not our answer
            if reply.service == service and reply.state in HEALTHY:
                return reply
        return None
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m shared.health", description=__doc__.splitlines()[0])
    parser.add_argument("service", nargs="?", default=os.environ.get("SYNDICATE_SERVICE"))
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to collect replies")
    args = parser.parse_args(argv)
    if not args.service:
        parser.error("name the service (argument or SYNDICATE_SERVICE)")
    try:
        reply = asyncio.run(asyncio.wait_for(probe(Settings().nats_servers, args.service, args.wait), 3 * args.wait + 2))
    except Exception as exc:  # any failure to reach the bus means unhealthy, said briefly
        print(f"unhealthy: {args.service}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if reply is None:
        print(f"unhealthy: no ready reply from {args.service}", file=sys.stderr)
        return 1
    print(f"ok: {reply.service} {reply.instance} {reply.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
