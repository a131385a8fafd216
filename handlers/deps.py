"""Shared route dependencies as Annotated aliases.

They are coroutines though they never wait: FastAPI runs a plain function's dependency on its
thread pool, two hops to another thread and back for every request."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from handlers.request_body import read_generate_request
from handlers.schemas import GenerateRequestBody
from textgen.service import GenerationService
from textgen.settings import Settings


async def _service(request: Request) -> GenerationService:
    service: GenerationService = request.app.state.service
    return service


async def _deadline(request: Request) -> float | None:
    """When generation must stop: the time budget, or the Lambda invocation's end if sooner."""
    settings: Settings = request.app.state.settings
    limits = [settings.generation_time_budget_s] if settings.generation_time_budget_s else []
    context = request.scope.get("aws.context")  # set by Mangum on Lambda
    if context is not None:
        remaining = context.get_remaining_time_in_millis() / 1000
        limits.append(remaining - settings.lambda_deadline_margin_s)
    return time.monotonic() + min(limits) if limits else None


ServiceDep = Annotated[GenerationService, Depends(_service)]
GenerateBodyDep = Annotated[GenerateRequestBody, Depends(read_generate_request)]
DeadlineDep = Annotated[float | None, Depends(_deadline)]
