"""Shared route dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from textgen.service import GenerationService

from handlers.request_body import read_generate_request
from handlers.schemas import GenerateRequestBody


def _service(request: Request) -> GenerationService:
    service: GenerationService = request.app.state.service
    return service


ServiceDep = Annotated[GenerationService, Depends(_service)]
GenerateBodyDep = Annotated[GenerateRequestBody, Depends(read_generate_request)]
