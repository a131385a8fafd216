"""Request bodies are read up to MAX_BODY_BYTES on every route, however they are sent."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.errors import BodyTooLarge


class BodyLimit:
    """Fails the read (413 body_too_large) of a body declared or streamed beyond the limit,
    before more of it is buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(f"request body is larger than the limit of {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
