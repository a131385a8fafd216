"""/v1 routes: the only place the OpenAI-compatible API builds HTTP responses, JSON or a
Server-Sent Events stream (`data: {chunk}` lines, then `data: [DONE]`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from handlers.deps import DeadlineDep
from handlers.errors import ERROR_STATUSES, documented_as, openai_answer, openai_status
from handlers.openai_api import protocol as p
from handlers.openai_api.serving import OpenAIServing, Prepared
from handlers.strict_json import StrictJSONRoute
from handlers.waiting import until_finished
from textgen.errors import TextgenError

# A body without a Content-Type header is read as JSON (API Gateway test events carry none).
router = APIRouter(
    prefix="/v1",
    tags=["OpenAI-compatible"],
    strict_content_type=False,
    route_class=StrictJSONRoute,
)
ERRORS: dict[int | str, dict[str, Any]] = {
    openai_status(status): documented_as(p.OpenAIError) for status in ERROR_STATUSES
}


# A coroutine, as handlers.deps explains: no trip through the thread pool per request.
async def _serving(request: Request) -> OpenAIServing:
    serving: OpenAIServing = request.app.state.openai
    return serving


ServingDep = Annotated[OpenAIServing, Depends(_serving)]


@router.get("/models", responses=ERRORS)
def list_models(serving: ServingDep) -> p.ModelList:
    """The store's models of the families this service serves."""
    return serving.models()


@router.get("/models/{model}", responses=ERRORS)
def retrieve_model(model: str, serving: ServingDep) -> p.ModelCard:
    """One model of the store."""
    return serving.model(model)


@router.post("/completions", responses=ERRORS, response_model=None)
async def completions(
    request: Request, body: p.CompletionRequest, serving: ServingDep, deadline: DeadlineDep
) -> p.Completion | StreamingResponse:
    """Text completion: a prompt (or several), n choices each; streamed with `stream: true`."""
    prepared = await serving.start_completion(body, deadline)
    if body.stream:
        usage = _include_usage(body) and (lambda: serving.usage_chunk(prepared, p.Completion))
        return _event_stream(prepared, serving.completion_chunks(prepared), usage)
    return serving.completion(prepared, await until_finished(request, prepared.generation))


@router.post("/chat/completions", responses=ERRORS, response_model=None)
async def chat_completions(
    request: Request, body: p.ChatCompletionRequest, serving: ServingDep, deadline: DeadlineDep
) -> p.ChatCompletion | StreamingResponse:
    """Chat: the messages rendered with the model's chat template; streamed with `stream: true`."""
    prepared = await serving.start_chat(body, deadline)
    if body.stream:
        usage = _include_usage(body) and (
            lambda: serving.usage_chunk(prepared, p.ChatCompletionChunk)
        )
        return _event_stream(prepared, serving.chat_chunks(prepared), usage)
    return serving.chat(prepared, await until_finished(request, prepared.generation))


def _include_usage(body: p.CompletionRequest | p.ChatCompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _event_stream(
    prepared: Prepared, chunks: AsyncIterator[BaseModel], usage: Any
) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {chunk.model_dump_json()}\n\n"
            if usage:
                yield f"data: {usage().model_dump_json()}\n\n"
        except TextgenError as exc:  # headers are sent: the error becomes the last event
            _, error = openai_answer(exc)
            yield f"data: {json.dumps(error, ensure_ascii=False, separators=(',', ':'))}\n\n"
        finally:
            # A client that disconnects mid-stream ends up here too: free its rows.
            prepared.generation.cancel()
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")
