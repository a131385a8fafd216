"""HTTP routes: translate wire types to engine calls and back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from handlers.deps import DeadlineDep, GenerateBodyDep, ServiceDep
from handlers.errors import ERROR_RESPONSES
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
) -> GenerateResponse:
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
    return GenerateResponse(
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


@router.post("/gpt2_model", responses=ERROR_RESPONSES, openapi_extra=OPENAPI_REQUEST_BODY)
async def gpt2_model(
    request: Request, body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep
) -> GenerateResponse:
    """Generate text with a GPT-2-architecture model; the prompts join the model's batch."""
    return await _generate(request, service, body, Family.GPT2, deadline)


@router.post("/llama_model", responses=ERROR_RESPONSES, openapi_extra=OPENAPI_REQUEST_BODY)
async def llama_model(
    request: Request, body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep
) -> GenerateResponse:
    """Generate text with a LLaMA-architecture model; the prompts join the model's batch."""
    return await _generate(request, service, body, Family.LLAMA, deadline)


@router.get("/health", responses={503: {"model": HealthResponse}})
def health(service: ServiceDep) -> JSONResponse:
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
    return JSONResponse(body.model_dump(), status_code=503 if service.closing else 200)


@router.get("/models", responses=ERROR_RESPONSES)
def models(service: ServiceDep) -> ModelsResponse:
    """The models in the store, with family and available frameworks."""
    return ModelsResponse(
        store=service.store_uri,
        models=[
            ModelOut(name=m.name, family=m.family, frameworks=[str(f) for f in m.frameworks])
            for m in service.list_models()
        ],
    )
