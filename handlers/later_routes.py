"""The OpenAI-style and Batch API routes, added to the app when first wanted rather than at import.

A cold start on Lambda pays every import before its first answer, and the seed routes
(/gpt2_model, /llama_model), /health and /metrics need none of the OpenAI API's models, the Batch
API's services or their routes. They are added, with what serves them, before the first request
the app's routes so far do not serve (a /v1 path, or a path no route has: it then gets the 404 or
405 it would have got), when the OpenAPI document is first made (it lists every route), and by a
server's lifespan at its start (uvicorn: batches run on the server's loop, and a stopped server's
are taken up again).
"""

from __future__ import annotations

import threading

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

_including = threading.Lock()


def include_openai_routes(app: FastAPI) -> None:
    """Add the OpenAI-style and Batch API routes to `app` (made by handlers.factory), once."""
    with _including:
        if included(app):
            return
        from handlers.batch_api.routes import router as batch_router
        from handlers.batch_api.setup import batch_api_for
        from handlers.openai_api.routes import router as openai_router
        from handlers.openai_api.serving import OpenAIServing

        settings = app.state.settings
        serving = OpenAIServing(app.state.service)
        app.state.openai = serving  # before the routes that read them can be reached
        app.state.batch_api = batch_api_for(settings, serving)
        app.include_router(openai_router)
        app.include_router(batch_router)


def included(app: FastAPI) -> bool:
    return getattr(app.state, "batch_api", None) is not None


def include_on_first_use(app: FastAPI) -> None:
    """Add the routes before the first request that needs them and before a document is made."""
    make_document = app.openapi

    def openapi() -> dict[str, object]:
        include_openai_routes(app)
        return make_document()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(IncludeOnFirstUse)


class IncludeOnFirstUse:
    """Adds the routes before the first request none of the app's routes serves; once they are
    there (added so, or by the lifespan), a request costs one look at the app's state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            app: FastAPI = scope["app"]
            if not included(app) and not _served(app, scope):
                include_openai_routes(app)
        await self.app(scope, receive, send)


def _served(app: FastAPI, scope: Scope) -> bool:
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)
