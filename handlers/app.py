"""The app `uvicorn handlers.app:app` serves, configured from the environment."""

from handlers.factory import create_app

app = create_app()
