"""Every request's id: the caller's `x-request-id` when it sends a valid one, else, on Lambda, the
invocation's request id (so the two join), else a new one. It comes back as the response's
`x-request-id`, stands in every log line written while the request runs (a field of each record,
set from a context variable, which the threads a request hands work to inherit), and in the ids
of OpenAI-style responses."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from handlers.asgi import HttpMiddleware, on_response_start

REQUEST_ID_HEADER = "x-request-id"
# What a caller's id may be: short, and nothing a log line or a header could be bent by.
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def request_id_for(caller: str | None, lambda_context: Any = None) -> str:
    if caller is not None and _VALID.fullmatch(caller):
        return caller
    lambda_id = getattr(lambda_context, "aws_request_id", None)
    if isinstance(lambda_id, str) and _VALID.fullmatch(lambda_id):
        return lambda_id
    return uuid.uuid4().hex


class RequestIds(HttpMiddleware):
    """The request's id chosen, kept for the request's code, and answered."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = request_id_for(caller, scope.get("aws.context"))  # Mangum puts it there

        def answer_with_id(message: Message) -> None:
            MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, on_response_start(send, answer_with_id))
        finally:
            current_request_id.reset(token)


def stamp_log_records() -> None:
    """Give every log record the current request's id (`request_id`; Powertools' JSON lines
    carry it as a field), once per process."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "stamps_request_ids", False):
        return

    def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if (request_id := current_request_id.get()) is not None:
            record.request_id = request_id
        return record

    stamped.stamps_request_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(stamped)
