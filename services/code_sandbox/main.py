"""code-sandbox: runs untrusted code in layered isolation and answers an ExecResult.

Request/reply on SANDBOX_EXEC in the QUEUE_SANDBOX group (copies scale out). The
isolation tier is detected once at start-up and reported in health
(``details["isolation"]``); a host without isolation gets ``rejected`` results unless
SYNDICATE_SANDBOX_ALLOW_DEGRADED=1. The logic lives in ``pool.BoxPool``.
"""

from __future__ import annotations

import contextlib
import os

from services.code_sandbox.janitor import start_janitor
from services.code_sandbox.pool import BoxPool
from services.code_sandbox.settings import SandboxSettings
from shared import subjects
from shared.bus import make_broker
from shared.contracts import ExecRequest, ExecResult
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app

settings = SandboxSettings()
log = setup_logging("code-sandbox", settings.log_level, settings.log_json)
broker = make_broker("code-sandbox", settings)
runtime = ServiceRuntime("code-sandbox", settings)
pool = BoxPool(settings, subreaper=True)
runtime.stats = lambda: {"queue_depth": pool.waiting, "running": pool.running}
app = create_app(runtime, broker)
janitor: dict = {}


@app.on_startup
async def startup() -> None:
    await pool.start()
    host = pool.host
    assert host is not None
    if host.cgroups is not None:
        janitor["proc"], janitor["fd"] = start_janitor(host.cgroups.roots)
    runtime.details.update(
        isolation=pool.tier if pool.allowed else f"{pool.tier} (refusing code)",
        isolation_layers=sorted(host.layers), isolation_missing=host.missing,
        warm_pool=settings.sandbox_warm_pool, concurrency=settings.sandbox_concurrency,
    )
    if not pool.allowed:
        runtime.state = "degraded"
        log.error("no isolation available: every request will be rejected", missing=host.missing)
    else:
        log.info("sandbox ready", tier=pool.tier, layers=sorted(host.layers))


@app.after_shutdown
async def shutdown() -> None:
    await pool.close()
    if "fd" in janitor:
        with contextlib.suppress(OSError):
            os.close(janitor["fd"])  # EOF: the janitor sweeps (nothing is left) and exits


@broker.subscriber(subjects.SANDBOX_EXEC, queue=subjects.QUEUE_SANDBOX)
async def on_exec(req: ExecRequest) -> ExecResult:
    return await pool.run(req)
