from services.coder_agent.main import app
from shared.service import run

run(app)
