import uvicorn

from services.gateway.main import create_gateway
from services.gateway.settings import GatewaySettings

settings = GatewaySettings()
uvicorn.run(
    create_gateway(settings), host=settings.gateway_host, port=settings.gateway_port,
    log_level="warning", access_log=False, timeout_graceful_shutdown=5,
)
