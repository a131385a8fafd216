"""The one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from handlers.schemas import ErrorResponse
from handlers.waiting import ClientDisconnected
from textgen import errors
from textgen.engine import GenerationFailed

logger = logging.getLogger(__name__)


class MalformedBody(errors.TextgenError):
    """The request body is not JSON, or not JSON of a shape the API accepts."""

    kind = "malformed_body"


class BodyTooLarge(errors.TextgenError):
    kind = "body_too_large"


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
    ClientDisconnected: 499,  # nobody reads it: the connection is gone
}


# What every route may answer besides its success, for the OpenAPI documents: derived from the
# table above (plus request validation and unexpected failures), so the two cannot drift apart.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse}
    for status in sorted({*STATUS_BY_ERROR.values(), 422, 500} - {499})
}


def error_response(status: int, kind: str, message: str, details: Any = None) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "details": jsonable_encoder(details)}}
    headers = {}
    if isinstance(details, dict) and "retry_after" in details:  # 429 and 503: when to retry
        headers["Retry-After"] = str(details["retry_after"])
    return JSONResponse(status_code=status, content=body, headers=headers)


def _status_of(error: errors.TextgenError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.TextgenError)
    status = _status_of(exc)
    if status >= 500:
        logger.error("request failed: %s", exc.message)
    return error_response(status, exc.kind, exc.message, exc.details or None)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(part) for part in e["loc"] if part != "body"), "message": e["msg"]}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems)
    return error_response(422, "validation_error", summary, problems)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, "http_error", str(exc.detail))


async def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the service's logs")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.TextgenError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
