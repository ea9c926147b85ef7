from services.reasoner_agent.main import app
from shared.service import run

run(app)
