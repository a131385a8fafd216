"""The OpenAPI documents state the limits the code enforces, from the same constants and settings.

FastAPI writes the documents from the wire types; the limits that depend on settings (prompts per
request, characters per prompt, the largest max_tokens) and those the engine checks itself (so
that a bad value keeps its own error, e.g. 400 invalid_model_name) are added here, once, when
the documents are first asked for. Schema fuzzing (tests/test_schema_fuzzing.py) holds the two
together: data the documents rule out is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from handlers.schemas import ErrorResponse, GenerateResponse, HealthResponse, ModelsResponse
from textgen.engine.params import (
    MAX_REPETITION_PENALTY,
    MAX_SEED,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MAX_TEMPERATURE,
    MIN_SEED,
)
from textgen.settings import Settings
from textgen.store.base import MODEL_NAME_PATTERN

Schema = dict[str, Any]
# A prompt may not hold control characters other than whitespace (tab, line breaks, vertical tab,
# form feed): textgen.request_checks.
_PRINTABLE = "^[^\\u0000-\\u0008\\u000e-\\u001f\\u007f]*$"


def document_limits(app: FastAPI, settings: Settings) -> None:
    generate: Callable[[], Schema] = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            document = generate()
            _add_referenced_schemas(document)
            _constrain_document(document, settings)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _referenced_models() -> tuple[type[Any], ...]:
    """The bodies the routes name by reference (handlers.errors.documented_as)."""
    # Imported when a document is made: the OpenAI routes' models load with their routes
    # (handlers.later_routes).
    from handlers.openai_api.protocol import OpenAIError

    return (ErrorResponse, GenerateResponse, HealthResponse, ModelsResponse, OpenAIError)


def _add_referenced_schemas(document: Schema) -> None:
    """The referenced models' schemas among the document's components, in its order (by name),
    exactly as FastAPI writes a response model's: from routes made for that alone, when a
    document is asked for rather than when the app's routes are imported."""
    router = APIRouter()
    for index, model in enumerate(_referenced_models()):
        router.add_api_route(f"/{index}", _nothing, responses={400: {"model": model}})
    found = get_openapi(title="", version="", routes=router.routes)["components"]["schemas"]
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update({name: s for name, s in found.items() if name not in schemas})
    document["components"]["schemas"] = dict(sorted(schemas.items()))


def _nothing() -> None:
    """The endpoint of the routes that only carry a model to the document."""


def _constrain_document(document: Schema, settings: Settings) -> None:
    from handlers.openai_api.protocol import (
        MAX_CHAT_TOP_LOGPROBS,
        MAX_CHOICES,
        MAX_COMPLETION_LOGPROBS,
    )

    prompt: Schema = {"minLength": 1, "maxLength": settings.max_prompt_chars}
    prompt["pattern"] = _PRINTABLE
    prompts = {"minItems": 1, "maxItems": settings.max_prompts, "items": prompt}
    stop = {"minLength": 1, "maxLength": MAX_STOP_CHARS}
    sampling: dict[str, Schema] = {
        "temperature": {"minimum": 0, "maximum": MAX_TEMPERATURE},
        "top_p": {"exclusiveMinimum": 0, "maximum": 1},
        "seed": {"minimum": MIN_SEED, "maximum": MAX_SEED},
        "stop": {"string": stop, "array": {"maxItems": MAX_STOP_STRINGS, "items": stop}},
    }
    cap = settings.max_new_tokens_cap
    openai: dict[str, Schema] = {
        **sampling,
        "model": {"pattern": MODEL_NAME_PATTERN},
        "n": {"minimum": 1, "maximum": MAX_CHOICES},
        "presence_penalty": {"const": 0},
        "frequency_penalty": {"const": 0},
        "logit_bias": {"maxProperties": 0},
    }
    limits: dict[str, dict[str, Schema]] = {
        "GenerateRequestBody": {
            **sampling,
            "model_name": {"pattern": MODEL_NAME_PATTERN},
            "prompts": prompts,
            "task": {"enum": ["text-generation"]},
            "framework": {"enum": ["pt", "tf"]},
            "max_tokens": {"minimum": 1, "maximum": cap},
            "top_k": {"minimum": 0},
            "repetition_penalty": {"exclusiveMinimum": 0, "maximum": MAX_REPETITION_PENALTY},
        },
        "CompletionRequest": {
            **openai,
            "prompt": {"string": prompt, "array": prompts},
            "max_tokens": {"minimum": 0, "maximum": cap},
            "logprobs": {"minimum": 0, "maximum": MAX_COMPLETION_LOGPROBS},
            "best_of": {"const": 1},
            "suffix": {"maxLength": 0},
        },
        "ChatCompletionRequest": {
            **openai,
            "max_tokens": {"minimum": 1, "maximum": cap},
            "max_completion_tokens": {"minimum": 1, "maximum": cap},
            "top_logprobs": {"minimum": 0, "maximum": MAX_CHAT_TOP_LOGPROBS},
        },
    }
    components = document.get("components", {}).get("schemas", {})
    for name, properties in limits.items():
        if name in components:
            _constrain(components[name], properties)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for branch in (body or {}).get("schema", {}).get("anyOf", []):
                if branch.get("type") == "array":  # the original call shape: prompts alone
                    branch.update(prompts)
                elif branch.get("title") == "GenerateRequestBody":
                    _constrain(branch, limits["GenerateRequestBody"])
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "model":
                    parameter["schema"]["pattern"] = MODEL_NAME_PATTERN


def _constrain(schema: Schema, properties: dict[str, Schema]) -> None:
    for name, keywords in properties.items():
        if name in schema.get("properties", {}):
            _apply(schema["properties"][name], keywords)


def _apply(schema: Schema, keywords: Schema) -> None:
    """Add keywords to a property, to each typed branch of an optional or union property, or per
    branch type ({"string": {...}, "array": {...}})."""
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    for branch in branches:
        per_type = keywords.get(branch.get("type", ""))
        if per_type is not None or not ({"string", "array"} & keywords.keys()):
            branch.update(per_type if per_type is not None else keywords)
