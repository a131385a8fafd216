"""API keys: with API_KEYS (or API_KEYS_FILE) set, every route but /health and /metrics (unless
METRICS_REQUIRE_API_KEY) needs `Authorization: Bearer <key>`. Unset, the service is open (behind
API Gateway, its own API key protects the Lambda deployment)."""

from __future__ import annotations

import hashlib
import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.errors import Unauthorized, response_for, route_path

OPEN_PATHS = frozenset({"/health", "/metrics"})


class ApiKeys:
    def __init__(self, app: ASGIApp, keys: list[str], open_paths: frozenset[str] = OPEN_PATHS):
        self.app = app
        self._keys = [key.encode() for key in keys]
        self._open = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self._open or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        error = Unauthorized("a valid API key is required: send Authorization: Bearer <key>")
        response = response_for(error, route_path(scope))
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        # Compare with every key, in constant time each, so timing tells nothing.
        matches = [hmac.compare_digest(given.strip().encode(), key) for key in self._keys]
        return any(matches)


def caller_identity(scope: Scope, keys_on: bool) -> str:
    """Who owns what a caller makes (files, batches): a digest of its API key where keys are on
    (the middleware has checked it), one shared owner where the service is open."""
    if not keys_on:
        return ""
    _, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
    return hashlib.sha256(given.strip().encode()).hexdigest()[:32]
