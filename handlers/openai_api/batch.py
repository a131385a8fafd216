"""OpenAI's batch files run on this process's engines: `textgen run-batch` (vLLM's `run-batch` on
the same format).

An input line is `{"custom_id", "method": "POST", "url", "body"}` for `/v1/completions` or
`/v1/chat/completions`; an output line is `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`, the body what the route would answer (its OpenAI error
body for a request that failed). The whole file is checked before anything runs, as OpenAI's
Batch API checks it at create time: a line that is not JSON, names another endpoint, lacks a
custom_id or repeats one, or has a body the endpoint refuses, and the file is refused, naming its
first bad lines. Then every line is in flight together (the engine batches their rows, as it
batches concurrent clients), as many as the engine's queue takes, and each comes out in input
order, once: answered, or failed with its error (a model not in the store, a prompt too long).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from handlers.errors import BatchFileInvalid, openai_answer
from handlers.openai_api import protocol as p
from handlers.openai_api.serving import OpenAIServing, Prepared
from handlers.request_ids import current_request_id
from textgen.errors import Overloaded, ShuttingDown, TextgenError

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
Body = p.CompletionRequest | p.ChatCompletionRequest
ENDPOINTS: dict[str, type[p.CompletionRequest] | type[p.ChatCompletionRequest]] = {
    COMPLETIONS: p.CompletionRequest,
    CHAT: p.ChatCompletionRequest,
}
_BAD_LINES_NAMED = 5
_RETRY_AFTER_FULL_S = 0.05  # the engine's queue was full: a line waits for room


@dataclass(frozen=True)
class BatchRequest:
    line: int  # 1-based, in the file
    custom_id: str
    url: str
    body: p.CompletionRequest | p.ChatCompletionRequest


def jsonl_lines(data: bytes) -> list[str]:
    """A JSONL file's lines, split at line feeds only: a JSON string may hold U+2028, U+0085 and
    the other characters str.splitlines also splits at. A UTF-8 byte order mark (which some
    editors write) is skipped; UnicodeDecodeError where the file is no UTF-8."""
    return data.decode("utf-8-sig").split("\n")


def parse_batch(
    lines: Iterable[str],
    check: Callable[[Body], None] | None = None,
    endpoint: str | None = None,
    max_line_bytes: int | None = None,
) -> list[BatchRequest]:
    """The file's requests, in order; BatchFileInvalid naming its first bad lines. `check`, where
    given, refuses a body as the endpoint would (OpenAIServing.check); without it, such a body is
    its line's error when it runs. With `endpoint`, every line must
    be for it (the Batch API's batches have one endpoint each)."""
    requests: list[BatchRequest] = []
    problems: list[str] = []
    seen: set[str] = set()
    endpoints = {endpoint: ENDPOINTS[endpoint]} if endpoint else ENDPOINTS
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            if max_line_bytes is not None and len(text.encode()) > max_line_bytes:
                raise ValueError(f"longer than {max_line_bytes} bytes (MAX_BODY_BYTES)")
            requests.append(_request(number, text, seen, endpoints, check))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:_BAD_LINES_NAMED])
        more = len(problems) - _BAD_LINES_NAMED
        raise BatchFileInvalid(
            f"the batch file has {len(problems)} bad line(s): {shown}"
            + (f"; and {more} more" if more > 0 else ""),
            lines=len(problems),
        )
    if not requests:
        raise BatchFileInvalid("the batch file holds no request")
    return requests


def _request(
    number: int,
    text: str,
    seen: set[str],
    endpoints: Mapping[str, type[BaseModel]],
    check: Callable[[Body], None] | None,
) -> BatchRequest:
    try:
        line = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(line, dict):
        raise ValueError("not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise ValueError("no custom_id (a non-empty string)")
    if custom_id in seen:
        raise ValueError(f"custom_id {custom_id!r} is used by an earlier line")
    seen.add(custom_id)
    if line.get("method", "POST") != "POST":
        raise ValueError(f"method {line.get('method')!r}: only POST")
    url = line.get("url")
    endpoint = endpoints.get(url) if isinstance(url, str) else None
    if endpoint is None:
        raise ValueError(f"url {url!r}: one of {', '.join(endpoints)}")
    try:
        body = endpoint.model_validate(line.get("body"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ValueError(f"body.{where}: {first['msg']}") from None
    assert isinstance(url, str) and isinstance(body, p.CompletionRequest | p.ChatCompletionRequest)
    if body.stream:
        raise ValueError("body.stream: a batch's answers are not streamed")
    try:
        if check is not None:
            check(body)
    except TextgenError as exc:
        raise ValueError(f"body.{exc.details.get('field', '')}: {exc.message}") from None
    return BatchRequest(number, custom_id, url, body)


async def run_batch(
    serving: OpenAIServing,
    requests: list[BatchRequest],
    in_flight: int,
    on_done: Callable[[dict[str, Any]], None] = lambda record: None,
) -> list[dict[str, Any]]:
    """Every request's output line, in input order, with up to `in_flight` requests on the
    engines at once; `on_done` is called with each line as it completes. A service stopping
    (ShuttingDown) stops the run: its lines are no answers, and whoever runs them again later
    must not find them answered.

    Lines are queued in input order from one thread, one right after another, as a caller
    handing the engine all its prompts would: the engine then starts with as many rows as have
    come (lines queued one by one from many threads trickled in and the first steps ran with
    few rows)."""
    slots = asyncio.Semaphore(max(in_flight, 1))
    finishing: list[asyncio.Task[dict[str, Any]]] = []

    def finished(task: asyncio.Task[dict[str, Any]]) -> None:
        slots.release()
        if not task.cancelled() and task.exception() is None:
            on_done(task.result())

    try:
        for request in requests:
            await slots.acquire()
            request_id = uuid.uuid4().hex  # as a request's through the API (handlers.request_ids)
            token = current_request_id.set(request_id)
            try:
                queued = await _queue(serving, request)
                # The task takes this context along: the answer is named by the request's id.
                finishing.append(asyncio.create_task(_finish(serving, request, queued, request_id)))
            finally:
                current_request_id.reset(token)
            finishing[-1].add_done_callback(finished)
        return [await task for task in finishing]
    except ShuttingDown:
        for task in finishing:
            task.cancel()
        raise


async def _queue(
    serving: OpenAIServing, request: BatchRequest
) -> Prepared | tuple[int, dict[str, Any]]:
    """The request on its engine, or the error that refused it (a full queue waits for room)."""
    while True:
        try:
            return await run_in_threadpool(_submit, serving, request.body)
        except Overloaded:
            await asyncio.sleep(_RETRY_AFTER_FULL_S)
        except ShuttingDown:
            raise  # not the line's error: the line is left for the run after the restart
        except TextgenError as exc:
            return openai_answer(exc)


def _submit(
    serving: OpenAIServing, body: p.CompletionRequest | p.ChatCompletionRequest
) -> Prepared:
    if isinstance(body, p.CompletionRequest):
        return serving.submit_completion(body, deadline=None, background=True)
    return serving.submit_chat(body, deadline=None, background=True)


async def _finish(
    serving: OpenAIServing,
    request: BatchRequest,
    queued: Prepared | tuple[int, dict[str, Any]],
    request_id: str,
) -> dict[str, Any]:
    """The request's output line: the route's answer, or its error."""
    if isinstance(queued, tuple):
        status, body = queued
    else:
        try:
            outputs = await queued.generation.outputs()
            answer: BaseModel = (
                serving.completion(queued, outputs)
                if isinstance(request.body, p.CompletionRequest)
                else serving.chat(queued, outputs)
            )
            status, body = 200, answer.model_dump(mode="json")
        except ShuttingDown:
            raise
        except TextgenError as exc:
            status, body = openai_answer(exc)
    return output_line(request.custom_id, status, body, request_id)


def output_line(
    custom_id: str, status: int, body: dict[str, Any], request_id: str
) -> dict[str, Any]:
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }
