"""The Lambda function's service, made first thing on a cold start: importing this module starts
loading PRELOAD_MODELS on a thread of its own (GenerationService.preload_in_background), so that
the download and the session creation overlap the imports that come after it."""

from __future__ import annotations

from handlers.prometheus import observe_finished
from textgen.malloc import limit_arenas
from textgen.service import GenerationService
from textgen.settings import get_settings
from textgen.store import open_store

_settings = get_settings()
limit_arenas(_settings.malloc_arenas)  # before the loading thread starts allocating
_store = open_store(_settings.model_store, _settings)
service = GenerationService(_settings, _store, on_finished=observe_finished)
preloading = service.preload_in_background(_settings.preload_models)
