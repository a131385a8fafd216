"""Limits on what a single request may make the service hold, on every route, checked as the
request arrives: the query string and headers (414, 431), the body's size however it is sent
(413), and how long the body may take to arrive (408), so a client trickling a body byte by byte
holds a connection for a bounded time, and never the engine."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.errors import (
    BodyTimeout,
    BodyTooLarge,
    HeadersTooLarge,
    QueryTooLong,
    response_for,
    route_path,
)
from textgen.errors import TextgenError


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        body_timeout_s: float,
        max_query_bytes: int,
        max_header_bytes: int,
        body_limits_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Routes that take larger bodies (file uploads) than MAX_BODY_BYTES.
        self.body_limits_by_path = body_limits_by_path or {}
        self.body_timeout_s = body_timeout_s
        self.max_query_bytes = max_query_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if refused := self._refuse_head(scope):
            await response_for(refused, route_path(scope))(scope, receive, send)
            return
        await self.app(scope, self._limited(scope, receive), send)

    def _refuse_head(self, scope: Scope) -> TextgenError | None:
        query = len(scope.get("query_string", b""))
        if query > self.max_query_bytes:
            return QueryTooLong(
                f"the query string is {query} bytes, more than the limit of {self.max_query_bytes}"
            )
        headers = sum(len(name) + len(value) for name, value in scope.get("headers", []))
        if headers > self.max_header_bytes:
            return HeadersTooLarge(
                f"the headers are {headers} bytes, more than the limit of {self.max_header_bytes}"
            )
        return None

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        limit = self.body_limits_by_path.get(route_path(scope), self.max_body_bytes)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        deadline = time.monotonic() + self.body_timeout_s
        seen = 0
        whole = False

        async def limited_receive() -> Message:
            nonlocal seen, whole
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(f"request body is larger than the limit of {limit} bytes")
            if whole:  # after the body: only the disconnect is left to wait for, unbounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise BodyTimeout(
                    f"the request body did not arrive within {self.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > limit:
                    raise BodyTooLarge(f"request body is larger than the limit of {limit} bytes")
            return message

        return limited_receive
