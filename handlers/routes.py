"""HTTP routes: translate wire types to engine calls and back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from handlers.deps import DeadlineDep, GenerateBodyDep, OnLambdaDep, ServiceDep
from handlers.observability import record_generation
from handlers.request_body import OPENAPI_REQUEST_BODY
from handlers.schemas import (
    CompletionOut,
    ErrorResponse,
    GenerateRequestBody,
    GenerateResponse,
    HealthResponse,
    ModelOut,
    ModelsResponse,
    ThroughputOut,
    TimingOut,
)
from textgen.families import Family
from textgen.service import GenerationRequest, GenerationService

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422, 500, 501, 502, 503, 507)
}


def _generate(
    service: GenerationService,
    body: GenerateRequestBody,
    family: Family,
    deadline: float | None,
    on_lambda: bool,
) -> GenerateResponse:
    request = GenerationRequest(
        model_name=body.model_name,
        prompts=body.prompts,
        task=body.task,
        framework=body.framework,
        max_tokens=(
            service.settings.default_max_tokens if body.max_tokens is None else body.max_tokens
        ),
        deadline=deadline,
    )
    result = service.generate(request, family)
    record_generation(result, flush=not on_lambda)
    return GenerateResponse(
        model_name=result.model.name,
        family=result.model.family,
        framework=result.framework,
        task=request.task,
        results=[
            CompletionOut(
                generated_text=c.text, generated_tokens=c.tokens, finish_reason=c.finish_reason
            )
            for c in result.completions
        ],
        throughput=ThroughputOut.of(result.throughput),
        timing=TimingOut.of(result.timing),
    )


@router.post("/gpt2_model", responses=_ERRORS, openapi_extra=OPENAPI_REQUEST_BODY)
def gpt2_model(
    body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep, on_lambda: OnLambdaDep
) -> GenerateResponse:
    """Generate text with a GPT-2-architecture model, all prompts in one batch."""
    return _generate(service, body, Family.GPT2, deadline, on_lambda)


@router.post("/llama_model", responses=_ERRORS, openapi_extra=OPENAPI_REQUEST_BODY)
def llama_model(
    body: GenerateBodyDep, service: ServiceDep, deadline: DeadlineDep, on_lambda: OnLambdaDep
) -> GenerateResponse:
    """Generate text with a LLaMA-architecture model, all prompts in one batch."""
    return _generate(service, body, Family.LLAMA, deadline, on_lambda)


@router.get("/health")
def health(service: ServiceDep) -> HealthResponse:
    """Liveness, the store in use and the models loaded in memory."""
    return HealthResponse(
        status="ok",
        store=service.store.uri,
        loaded_models=[f"{name}:{framework}" for name, framework in service.registry.loaded_keys()],
    )


@router.get("/models", responses=_ERRORS)
def models(service: ServiceDep) -> ModelsResponse:
    """The models in the store, with family and available frameworks."""
    return ModelsResponse(
        store=service.store.uri,
        models=[
            ModelOut(name=m.name, family=m.family, frameworks=[str(f) for f in m.frameworks])
            for m in service.list_models()
        ],
    )
