"""Makes API Gateway's stage prefix (`/Prod`) the ASGI root path, so links such as /docs work."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def stage_prefix(event: dict[str, Any]) -> str:
    """'/Prod' when the client's URL carries the stage, '' otherwise (custom domains, $default)."""
    context = event.get("requestContext") or {}
    stage = context.get("stage")
    if not stage or stage == "$default":
        return ""
    seen = context.get("path") or event.get("rawPath") or ""  # REST (v1) or HTTP API (v2)
    prefix = f"/{stage}"
    return prefix if seen == prefix or seen.startswith(prefix + "/") else ""


class StagePrefix:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event")
        if scope["type"] == "http" and event and (prefix := stage_prefix(event)):
            path: str = scope["path"]
            if path != prefix and not path.startswith(prefix + "/"):
                path = prefix + path  # REST events give the path without the stage
            scope = {**scope, "root_path": prefix, "path": path}
        await self.app(scope, receive, send)
