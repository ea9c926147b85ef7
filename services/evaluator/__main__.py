from services.evaluator.main import app
from shared.service import run

run(app)
