"""What the app's own ASGI middlewares share: HTTP requests only, and a look at the response's
start (its status and headers) on its way out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware(ABC):
    """Sees HTTP requests; every other scope (lifespan, websockets) goes straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def on_response_start(send: Send, look: Callable[[Message], None]) -> Send:
    """`send`, calling `look` with the response's start message before it goes."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            look(message)
        await send(message)

    return sending
