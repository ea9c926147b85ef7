from services.router.main import app
from shared.service import run

run(app)
