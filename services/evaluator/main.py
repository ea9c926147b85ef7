"""evaluator: runs benchmark suites through the agents and models (see issue: quantization
quality vs speed). This spine version answers health only."""

from __future__ import annotations

from shared.bus import ensure_jetstream, make_broker
from shared.logging import setup_logging
from shared.service import ServiceRuntime, create_app
from shared.settings import Settings

settings = Settings()
log = setup_logging("evaluator", settings.log_level, settings.log_json)
broker = make_broker("evaluator", settings)
runtime = ServiceRuntime("evaluator", settings)
app = create_app(runtime, broker)


@app.on_startup
async def startup() -> None:
    await ensure_jetstream(broker)
