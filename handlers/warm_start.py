"""The Lambda function's service, made first thing on a cold start: importing this module starts
loading PRELOAD_MODELS (or the store's sole model: GenerationService.models_to_preload) on a
thread of its own (GenerationService.preload_in_background), so that the listing, the download and
the session creation overlap the imports that come after it. It imports only what the service
needs before the thread starts: the web stack and the metrics come after."""

from __future__ import annotations

from importlib import import_module

from textgen.generation import FinishedRequest
from textgen.malloc import limit_arenas
from textgen.service import GenerationService
from textgen.settings import get_settings
from textgen.store import open_store


def count_finished(request: FinishedRequest) -> None:
    """A finished request counted for /metrics and for CloudWatch (the invocation's EMF line)."""
    # Imported here, not above, so that the load starts about 0.14 s sooner on a cold start;
    # by the first finished request the app's own import has loaded both.
    from handlers.observability import emf_finished
    from handlers.prometheus import observe_finished

    observe_finished(request)
    emf_finished(request)


_settings = get_settings()
limit_arenas(_settings.malloc_arenas)  # before the loading thread starts allocating
_store = open_store(_settings.model_store, _settings)
service = GenerationService(_settings, _store, on_finished=count_finished)
if _settings.preload_models or _settings.preload_sole_model:
    # The step engine (and numpy) otherwise loads with the model. Imported on the loading thread,
    # beside the web stack's imports (both hold the GIL), it held back the session's creation,
    # which needs no GIL: the first token came 0.05-0.1 s later (docs/performance.md).
    import_module("textgen.engine.step_engine")
preloading = service.preload_in_background()
