"""JSON request bodies read strictly, on every route: valid UTF-8, no duplicate keys (which a
lenient parser resolves silently, last one wins), no NaN or Infinity (not JSON), and no nesting
so deep it exhausts the parser. Each is a 400 that says which."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from handlers.errors import MalformedBody


def loads_strict(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"request body is not valid UTF-8: {exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise MalformedBody("request body nests JSON too deeply") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise MalformedBody(f"request body gives the key {key!r} twice")
        found[key] = value
    return found


def _no_constants(name: str) -> Any:
    raise MalformedBody(f"request body holds {name}, which is not JSON")


class StrictJSONRoute(APIRoute):
    """Reads the whole body before FastAPI does (so the body limits answer with their own
    errors, not a generic one) and parses JSON strictly; FastAPI then uses what was parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            body = await request.body()
            content_type = request.headers.get("content-type", "application/json")
            if body and "json" in content_type.split(";")[0]:
                request._json = loads_strict(body)  # Starlette's cache of request.json()
            return await handler(request)

        return strict
