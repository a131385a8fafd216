"""The one place where errors become HTTP responses.

Each domain error has one status, in STATUS_BY_ERROR. The seed endpoints answer in the service's
own shape, `{"error": {"type", "message", "details"}}`; the OpenAI-compatible routes (/v1/...)
answer the same errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so
the official SDKs raise their usual exceptions (there a 422 is a 400: OpenAI's bad parameter).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from handlers.schemas import ErrorResponse
from textgen import errors
from textgen.engine import GenerationFailed

logger = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1/"


class MalformedBody(errors.TextgenError):
    """The request body is not JSON, or not JSON of a shape the API accepts."""

    kind = "malformed_body"


class BodyTooLarge(errors.TextgenError):
    kind = "body_too_large"


class BodyTimeout(errors.TextgenError):
    """The body did not arrive within REQUEST_BODY_TIMEOUT_S."""

    kind = "request_timeout"


class HeadersTooLarge(errors.TextgenError):
    kind = "headers_too_large"


class QueryTooLong(errors.TextgenError):
    kind = "query_too_long"


class Unauthorized(errors.TextgenError):
    """No API key, or not one of the service's (API_KEYS)."""

    kind = "invalid_api_key"


class ObjectNotFound(errors.TextgenError):
    """No file or batch of that id for this caller (another key's ids are not found either)."""

    kind = "not_found"


class BatchFileInvalid(errors.TextgenError):
    """A batch file OpenAI's Batch API would refuse at create time."""

    kind = "invalid_batch_file"


class BatchesUnavailable(errors.TextgenError):
    """The Batch API has nothing to run batches on here (Lambda without its AWS settings)."""

    kind = "batches_unavailable"


class ClientDisconnected(errors.TextgenError):
    """The client went away before its answer was ready; nobody reads the response."""

    kind = "client_disconnected"


STATUS_BY_ERROR: dict[type[errors.TextgenError], int] = {
    errors.InvalidRequest: 422,
    errors.InvalidModelName: 400,
    errors.ModelNotFound: 404,
    errors.WrongModelFamily: 422,
    errors.UnsupportedModel: 422,
    errors.FrameworkUnavailable: 422,
    errors.BackendNotInstalled: 501,
    errors.ModelLoadFailed: 500,
    errors.StoreUnavailable: 503,
    errors.ArtifactCorrupt: 502,
    errors.CacheBudgetExceeded: 507,
    errors.Overloaded: 429,
    errors.ShuttingDown: 503,
    errors.DownloadFailed: 503,
    GenerationFailed: 500,
    MalformedBody: 400,
    BodyTooLarge: 413,
    BodyTimeout: 408,
    HeadersTooLarge: 431,
    QueryTooLong: 414,
    Unauthorized: 401,
    ObjectNotFound: 404,
    BatchFileInvalid: 400,
    BatchesUnavailable: 503,
    ClientDisconnected: 499,  # nobody reads it: the connection is gone
}


def documented_as(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI response whose JSON body is `model`'s schema, referenced by name. Not FastAPI's
    {"model": ...}, which builds a pydantic TypeAdapter per route and status when the routes are
    imported (about 30 ms of a cold start, for documents few processes ever serve): the models'
    schemas are added where the documents are made (handlers.openapi_limits)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"content": {"application/json": {"schema": schema}}}


# What every route may answer besides its success, for the OpenAPI documents: derived from the
# table above (plus request validation and unexpected failures), so the two cannot drift apart.
ERROR_STATUSES = sorted({*STATUS_BY_ERROR.values(), 422, 500} - {499})
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: documented_as(ErrorResponse) for status in ERROR_STATUSES
}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


# Where OpenAI's API has its own code for an error: clients test for it (a prompt too long for
# the context is the one they shorten and retry).
_OPENAI_CODES: dict[type[errors.TextgenError], str] = {
    errors.ContextLengthExceeded: "context_length_exceeded",
}


def openai_code(error: errors.TextgenError) -> str:
    """The `code` of a domain error's OpenAI body: OpenAI's own where it has one, else its kind."""
    return _OPENAI_CODES.get(type(error), error.kind)


def openai_status(status: int) -> int:
    """OpenAI answers a bad parameter with a 400 where the seed endpoints say 422."""
    return 400 if status == 422 else status


def status_of(error: errors.TextgenError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(status: int, kind: str, message: str, details: Any = None) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "details": jsonable_encoder(details)}}
    return _with_retry_hint(JSONResponse(status_code=status, content=body), details)


def openai_error_body(status: int, kind: str, message: str, details: Any = None) -> dict[str, Any]:
    """OpenAI's error body for an error of that (OpenAI) status."""
    default_type = "rate_limit_error" if status == 429 else "server_error"
    error_type = _OPENAI_TYPES.get(
        status, "invalid_request_error" if status < 500 else default_type
    )
    param = details.get("field") if isinstance(details, dict) else None
    return {"error": {"message": message, "type": error_type, "param": param, "code": kind}}


def openai_error_response(
    status: int, kind: str, message: str, details: Any = None
) -> JSONResponse:
    status = openai_status(status)
    body = openai_error_body(status, kind, message, details)
    return _with_retry_hint(JSONResponse(status_code=status, content=body), details)


def openai_answer(error: errors.TextgenError) -> tuple[int, dict[str, Any]]:
    """A domain error as OpenAI's API answers it: its status and body (a response, a stream's
    last event, a batch file's output line)."""
    status = openai_status(status_of(error))
    return status, openai_error_body(status, openai_code(error), error.message, error.details)


def response_for(error: errors.TextgenError, path: str) -> JSONResponse:
    """The response to a domain error on `path`, in the shape of its API."""
    if path.startswith(OPENAI_PREFIX):
        status, body = openai_answer(error)
        return _with_retry_hint(JSONResponse(status_code=status, content=body), error.details)
    return error_response(status_of(error), error.kind, error.message, error.details or None)


def _with_retry_hint(response: JSONResponse, details: Any) -> JSONResponse:
    if isinstance(details, dict) and "retry_after" in details:  # 429: when to retry
        response.headers["Retry-After"] = str(details["retry_after"])
    return response


def route_path(scope: Any) -> str:
    """The request's path below the root path (API Gateway's stage prefix)."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    return path[len(root) :] if root and path.startswith(root) else path


def _path(request: Request) -> str:
    return route_path(request.scope)


def _builder(request: Request) -> Any:
    return openai_error_response if _path(request).startswith(OPENAI_PREFIX) else error_response


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.TextgenError)
    if status_of(exc) >= 500:
        logger.error("request failed: %s", exc.message)
    return response_for(exc, _path(request))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(part) for part in e["loc"] if part != "body"), "message": e["msg"]}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems)
    details: Any = problems
    if _path(request).startswith(OPENAI_PREFIX):
        details = {"field": problems[0]["field"] if problems else None}
    return _builder(request)(422, "validation_error", summary, details)  # type: ignore[no-any-return]


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response: JSONResponse = _builder(request)(exc.status_code, "http_error", str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path; a path served by two
        # routes (GET and POST /v1/batches) allows the methods of both.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in _each_route(request.app.router.routes):
        if route.matches(request.scope)[0] is Match.PARTIAL:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _each_route(routes: list[Any]) -> Iterable[Any]:
    """Every route, those of included routers too: FastAPI from 0.16x keeps an included router
    whole, as one entry, and walks it with `iter_route_contexts`."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    return walk(routes) if walk is not None else routes


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return _builder(request)(500, "internal_error", "internal error; see the service's logs")  # type: ignore[no-any-return]


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.TextgenError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
