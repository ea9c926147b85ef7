from services.retriever.main import app
from shared.service import run

run(app)
