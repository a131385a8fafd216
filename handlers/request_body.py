"""Reads a generation request in either call shape the API accepts.

1. A JSON object body with every field.
2. The original app's shape: scalar fields in the query string, the body a bare JSON list
   of prompts.

JSON values must have their field's type (`"max_tokens": "5"` or `true` is a 422, as OpenAI's API
answers); a query string holds only text, so there each value is read as its field's type.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from handlers.errors import MalformedBody
from handlers.schemas import GenerateRequestBody
from handlers.strict_json import loads_strict


async def read_generate_request(request: Request) -> GenerateRequestBody:
    raw = await request.body()  # at most MAX_BODY_BYTES: handlers.limits.BodyLimit sees to it
    # Only the API's own fields are read from the query string: gateways and clients add others.
    params = request.query_params
    query = {k: params.getlist(k) for k in params if k in GenerateRequestBody.model_fields}
    fields = _merge(_typed(query), _parse_json(raw))
    try:
        return GenerateRequestBody.model_validate(fields, strict=True)
    except ValidationError as exc:
        raise _validation_error(exc) from exc


def _typed(query: dict[str, list[str]]) -> dict[str, Any]:
    """Each query-string value read as its field's type ("5" as 5 for max_tokens); a field given
    more than once is a list (`stop=a&stop=b`), which only a field of strings takes."""
    typed: dict[str, Any] = {}
    for name, texts in query.items():
        reader = _query_reader(name)
        try:
            if len(texts) == 1:
                typed[name] = reader.validate_strings(texts[0])
            else:
                typed[name] = reader.validate_python(texts, strict=True)
        except ValidationError as exc:
            raise _validation_error(exc, name) from exc
    return typed


@cache  # built on first use: the query-string shape is rare and cold starts count
def _query_reader(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(GenerateRequestBody.model_fields[name].rebuild_annotation())


def _validation_error(exc: ValidationError, *loc: str) -> RequestValidationError:
    problems = exc.errors(include_url=False, include_context=False)
    return RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in problems])


def _parse_json(raw: bytes) -> Any:
    return loads_strict(raw) if raw.strip() else None


def _merge(query: dict[str, str], payload: Any) -> dict[str, Any]:
    if payload is None:
        return dict(query)
    if isinstance(payload, list):
        if "prompts" in query:
            raise MalformedBody("prompts given both in the query string and as the body")
        return {**query, "prompts": payload}
    if isinstance(payload, dict):
        both = sorted(set(query) & set(payload))
        if both:
            raise MalformedBody(f"fields given both in the query string and the body: {both}")
        return {**query, **payload}
    raise MalformedBody("request body must be a JSON object, or a JSON list of prompts")


OPENAPI_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        GenerateRequestBody.model_json_schema(),
                        {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "The original call shape: the prompts alone, with "
                            "model_name, task, framework and max_tokens in the query string.",
                        },
                    ]
                }
            }
        },
    }
}
