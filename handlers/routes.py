"""HTTP routes: translate wire types to engine calls and back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from handlers.deps import DeadlineDep, GenerateBodyDep, ServiceDep
from handlers.errors import ERROR_RESPONSES, documented_as
from handlers.observability import record_generation
from handlers.request_body import OPENAPI_REQUEST_BODY
from handlers.schemas import (
    CompletionOut,
    EngineOut,
    GenerateRequestBody,
    GenerateResponse,
    HealthResponse,
    ModelOut,
    ModelsResponse,
    ThroughputOut,
    TimingOut,
)
from handlers.strict_json import StrictJSONRoute
from handlers.waiting import until_finished
from textgen.engine import SamplingParams
from textgen.families import Family, parse_framework
from textgen.service import GenerationRequest, GenerationService

router = APIRouter(route_class=StrictJSONRoute)


def _json(body: BaseModel, status_code: int = 200) -> Response:
    """A wire type's JSON, written by pydantic. The routes declare no response model: FastAPI
    would build a validator for each when the routes are imported (and import pydantic.v1 to
    check the model's kind), a cold start's cost, then check every answer again; the documents
    name the models by reference instead (handlers.errors.documented_as)."""
    return Response(body.model_dump_json(), status_code, media_type="application/json")


def _answers(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers: `model` on success, the errors' bodies otherwise."""
    return {200: documented_as(model), **ERROR_RESPONSES}


def _sampling(body: GenerateRequestBody) -> SamplingParams:
    """The body's sampling fields; those it leaves out keep the engine's defaults (greedy)."""
    given = {
        name: value
        for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed")
        if (value := getattr(body, name)) is not None
    }
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return SamplingParams(**given, stop=stop)


async def _generate(
    http_request: Request,
    service: GenerationService,
    body: GenerateRequestBody,
    family: Family,
    deadline: float | None,
) -> Response:
    request = GenerationRequest(
        model_name=body.model_name,
        prompts=body.prompts,
        family=family,
        framework=parse_framework(body.framework),
        task=body.task,
        max_tokens=body.max_tokens,
        sampling=_sampling(body),
        deadline=deadline,
    )
    # Loading a model blocks: it runs in the thread pool. The wait for tokens holds no thread.
    generation = await run_in_threadpool(service.submit, request)
    result = generation.result(await until_finished(http_request, generation))
    record_generation(result)
    answer = GenerateResponse(
        model_name=result.model.name,
        family=result.model.family,
        framework=result.framework,
        task=result.task,
        results=[
            CompletionOut(
                generated_text=c.text, generated_tokens=c.tokens, finish_reason=c.finish_reason
            )
            for c in result.completions
        ],
        throughput=ThroughputOut.of(result.throughput),
        timing=TimingOut.of(result.timing),
    )
    return _json(answer)


@router.post(
    "/gpt2_model",
    response_model=None,
    responses=_answers(GenerateResponse),
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def gpt2_model(
    request: Request, body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep
) -> Response:
    """Generate text with a GPT-2-architecture model; the prompts join the model's batch."""
    return await _generate(request, service, body, Family.GPT2, deadline)


@router.post(
    "/llama_model",
    response_model=None,
    responses=_answers(GenerateResponse),
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def llama_model(
    request: Request, body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep
) -> Response:
    """Generate text with a LLaMA-architecture model; the prompts join the model's batch."""
    return await _generate(request, service, body, Family.LLAMA, deadline)


@router.get(
    "/health",
    response_model=None,
    responses={200: documented_as(HealthResponse), 503: documented_as(HealthResponse)},
)
def health(service: ServiceDep) -> Response:
    """Liveness, the store, and per loaded model its engine: rows running, requests queued."""
    body = HealthResponse(
        status="shutting_down" if service.closing else "ok",
        store=service.store_uri,
        loaded_models=[f"{name}:{framework}" for name, framework in service.loaded_models()],
        engines={
            f"{name}:{framework}": EngineOut(**vars(stats))
            for (name, framework), stats in service.engine_stats().items()
        },
    )
    return _json(body, status_code=503 if service.closing else 200)


@router.get("/models", response_model=None, responses=_answers(ModelsResponse))
def models(service: ServiceDep) -> Response:
    """The models in the store, with family and available frameworks."""
    answer = ModelsResponse(
        store=service.store_uri,
        models=[
            ModelOut(name=m.name, family=m.family, frameworks=[str(f) for f in m.frameworks])
            for m in service.list_models()
        ],
    )
    return _json(answer)
