"""The FastAPI app factory."""

from __future__ import annotations

# isort: off
import handlers.openapi_models  # noqa: F401  first: FastAPI's OpenAPI models build on first use
# isort: on

from importlib.metadata import version

from fastapi import FastAPI

from handlers.batch_api import FILES_PATH
from handlers.errors import install_error_handlers
from handlers.keys import OPEN_PATHS, ApiKeys
from handlers.later_routes import include_on_first_use
from handlers.limits import RequestLimits
from handlers.openapi_limits import document_limits
from handlers.prometheus import CountRequests, observe_finished, registry_for
from handlers.prometheus import router as metrics_router
from handlers.request_ids import RequestIds, stamp_log_records
from handlers.routes import router
from handlers.shutdown import graceful_lifespan
from textgen.malloc import limit_arenas
from textgen.service import GenerationService
from textgen.settings import Settings, get_settings
from textgen.store import open_store


def create_app(
    settings: Settings | None = None, service: GenerationService | None = None
) -> FastAPI:
    """The app on `service` (made from the settings, loading PRELOAD_MODELS first, when none is
    given: a service given is its caller's, preloading included)."""
    settings = settings or get_settings()
    limit_arenas(settings.malloc_arenas)  # before the server's threads start allocating
    app = FastAPI(
        title="serverless-textgen",
        summary="Text generation with GPT-2 and LLaMA models.",
        version=version("serverless-textgen"),
        lifespan=graceful_lifespan,
    )
    app.state.settings = settings
    if service is None:
        store = open_store(settings.model_store, settings)
        service = GenerationService(settings, store, on_finished=observe_finished)
        service.preload()
    app.state.service = service
    install_error_handlers(app)
    app.state.metrics_registry = registry_for(service)
    app.include_router(router)
    app.include_router(metrics_router)
    document_limits(app, settings)
    include_on_first_use(app)  # the OpenAI-style and Batch API routes (handlers.later_routes)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
        max_query_bytes=settings.max_query_bytes,
        max_header_bytes=settings.max_header_bytes,
        # An upload's multipart framing around the file: a few hundred bytes.
        body_limits_by_path={FILES_PATH: settings.max_batch_file_bytes + 64 * 1024},
    )
    keys = settings.api_key_list()
    if keys:
        open_paths = OPEN_PATHS - ({"/metrics"} if settings.metrics_require_api_key else set())
        app.add_middleware(ApiKeys, keys=keys, open_paths=open_paths)
    app.add_middleware(CountRequests)  # a refused request (401, 413) is counted too
    app.add_middleware(RequestIds)  # outermost: every answer, a refusal too, carries the id
    stamp_log_records()
    return app
