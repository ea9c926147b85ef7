from services.code_sandbox.main import app
from shared.service import run

run(app)
