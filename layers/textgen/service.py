"""The generation service: validates a request, finds (or loads) the model, and hands the request
to that model's engine, where it shares a batch with every other request for the model."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from textgen.backends import Backend, load_backend, runtime_for
from textgen.engine import EngineStats, Job
from textgen.errors import (
    FrameworkUnavailable,
    ShuttingDown,
    UnsupportedModel,
    WrongModelFamily,
)
from textgen.families import Family, Framework
from textgen.generation import (
    FinishedRequest,
    Generation,
    GenerationRequest,
    GenerationResult,
)
from textgen.loaded_models import LoadedModels
from textgen.model_files import files_for_runtime
from textgen.request_checks import checked_max_tokens
from textgen.settings import Settings
from textgen.store import FetchedModel, ModelDescription, ModelStore
from textgen.timing import Stopwatch


@dataclass(frozen=True)
class LoadedModel:
    backend: Backend
    fetched: FetchedModel


ModelKey = tuple[str, Framework]
Prompt = TypeVar("Prompt", str, list[int], str | list[int])
logger = logging.getLogger(__name__)


class GenerationService:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        on_finished: Callable[[FinishedRequest], None] | None = None,
    ) -> None:
        """`on_finished` is told each request's figures when it ends (on the engine's thread:
        it must be quick)."""
        self._settings = settings
        self._store = store
        self._on_finished = on_finished
        self._closing = False
        self._models: LoadedModels[ModelKey, LoadedModel] = LoadedModels(
            self._load, capacity=settings.max_loaded_models, on_evict=_close_quietly
        )

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def store_uri(self) -> str:
        return self._store.uri

    @property
    def closing(self) -> bool:
        return self._closing

    def begin_shutdown(self) -> None:
        """Refuse new requests from now on (503); running ones go on."""
        self._closing = True

    def loaded_models(self) -> list[ModelKey]:
        """(name, framework) of the models in memory, least recently used first."""
        return self._models.loaded_keys()

    def engine_stats(self) -> dict[ModelKey, EngineStats]:
        return {key: loaded.backend.engine.stats() for key, loaded in self._models.values()}

    def check(self, request: GenerationRequest) -> None:
        """The checks `submit` makes before it loads a model (a conversation is checked as one
        prompt: its text is known once the model's template renders it)."""
        given: Sequence[str | list[int]] = request.prompt_ids or request.prompts or ["-"]
        checked_max_tokens(request, given, self._settings)

    def submit(self, request: GenerationRequest) -> Generation:
        """Validate, load the model if needed (this blocks), render a conversation with the
        model's chat template, and queue the request's rows on the model's engine."""
        clock = Stopwatch()
        if self._closing:
            raise ShuttingDown("the service is shutting down and takes no new requests")
        prompts = request.prompts
        given: Sequence[str | list[int]] = request.prompt_ids or prompts
        if request.messages is None:  # checked before loading: a bad request loads nothing
            max_tokens = checked_max_tokens(request, given, self._settings)
        model = self._store_model(request.model_name, request.family)
        loaded, load_seconds = self._loaded(model, request.framework)
        backend = loaded.backend
        if request.messages is not None:  # the conversation is known once the model is loaded
            prompts = [backend.chat_prompt(request.messages)]
            max_tokens = checked_max_tokens(request, prompts, self._settings)
        name = request.prompt_name
        fitting = 1 if request.max_tokens is None else max_tokens  # a default gives way, below
        if request.prompt_ids is None:  # each prompt encoded once, then a row per choice
            ids = backend.encode(prompts, fitting, request.special_tokens, name)
        else:  # run as given; their text is what echo shows
            ids = backend.checked_ids(request.prompt_ids, fitting, name)
            prompts = [backend.decode(one) for one in request.prompt_ids]
        if request.max_tokens is None and all(ids):  # (a backend tokenizing later checks then)
            max_tokens = min(max_tokens, backend.context_length - max(map(len, ids)))
        rows = _rows(prompts, request.choices)
        prompt_ids = [list(one) for one in _rows(ids, request.choices)]  # a list per row
        job = Job(
            prompts=rows,
            prompt_ids=prompt_ids,
            max_new_tokens=max_tokens,
            sampling=request.sampling,
            deadline=request.deadline,
            logprobs=request.logprobs,
            prompt_logprobs=request.prompt_logprobs,
            stream=request.stream,
            background=request.background,
        )
        backend.check(job)
        if self._on_finished is not None:
            tell, choices = self._on_finished, request.choices
            job.handle.on_done(lambda h: tell(FinishedRequest.of(model.name, h, choices)))
        backend.engine.submit(job)
        fetched = loaded.fetched if load_seconds is not None else FetchedModel(loaded.fetched.path)
        return Generation(request, model, prompts, backend, job, fetched, load_seconds, clock)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Submit and wait, blocking this thread (for callers outside asyncio)."""
        generation = self.submit(request)
        return generation.result(generation.wait())

    def describe(self, name: str) -> ModelDescription:
        """A model of the store (ModelNotFound if it is not there)."""
        return self._store.describe(name)

    def load(self, name: str, framework: Framework) -> float | None:
        """Make sure a model is in memory; the seconds loading took, None if it was loaded."""
        return self._loaded(self._store.describe(name), framework)[1]

    def models_to_preload(self) -> list[ModelKey]:
        """PRELOAD_MODELS; where it names none and PRELOAD_SOLE_MODEL is on, the store's model
        if the store holds just one (in PyTorch, the API's default framework, where it has it)."""
        named = list(self._settings.preload_models)
        if named or not self._settings.preload_sole_model:
            return named
        names = self._store.model_names()
        if len(names) != 1 or Framework.PYTORCH not in self.describe(names[0]).frameworks:
            return []
        return [(names[0], Framework.PYTORCH)]

    def preload(self) -> None:
        """Load models_to_preload() before the first request (a server's start). A model
        PRELOAD_MODELS names that fails to load fails the start: the operator asked for it. The
        store's sole model was asked for by no one: a failure to list or load it is logged and
        left to the first request, as a transient error of the store must not stop a server."""
        if self._settings.preload_models:
            for name, framework in self.models_to_preload():
                self.load(name, framework)
        else:
            self._preload_logging_failures()

    def preload_in_background(self) -> threading.Thread:
        """Start loading models_to_preload() on a thread of their own (which lists the store,
        where it must) and return at once: a cold start's imports go on meanwhile. A request
        for one of them waits for its load (a model loads once however many ask); a load that
        fails is logged and left to the first request, which loads it again and answers with
        the error if it fails again."""
        thread = threading.Thread(
            target=self._preload_logging_failures, name="textgen-preload", daemon=True
        )
        thread.start()
        return thread

    def _preload_logging_failures(self) -> None:
        try:
            models = self.models_to_preload()
        except Exception:
            logger.exception("listing the store's models to preload failed")
            return
        for name, framework in models:
            try:
                self.load(name, framework)
            except Exception:
                logger.exception("preloading model '%s' (%s) failed", name, framework)

    def list_models(self) -> list[ModelDescription]:
        return self._store.list_models()

    def close(self, grace_seconds: float) -> None:
        """Refuse new requests; let the running ones finish within the grace period, then fail
        what is left."""
        self._closing = True
        deadline = time.monotonic() + grace_seconds
        engines = [loaded.backend.engine for _, loaded in self._models.values()]
        for engine in engines:
            engine.close(timeout=0)
        for engine in engines:
            if not engine.close(timeout=max(deadline - time.monotonic(), 0)):
                engine.abort(ShuttingDown("the service stopped before this request finished"))

    def _store_model(self, name: str, family: Family | None) -> ModelDescription:
        """The store's description of a model of `family` (any served family for None);
        another family is refused."""
        model = self._store.describe(name)
        if family is None and model.family not in tuple(Family):
            raise UnsupportedModel(
                f"model '{model.name}' is a {model.family} model; this service serves "
                + ", ".join(Family)
                + " models"
            )
        if family is not None and model.family != family:
            raise WrongModelFamily(
                f"model '{model.name}' is a {model.family} model; this endpoint serves {family} "
                f"models only (use /{model.family}_model)",
                family=model.family,
            )
        return model

    def _loaded(
        self, model: ModelDescription, framework: Framework
    ) -> tuple[LoadedModel, float | None]:
        if framework not in model.frameworks:
            raise FrameworkUnavailable(_missing_framework_message(model.name, framework))
        return self._models.get((model.name, framework))

    def _load(self, key: ModelKey) -> LoadedModel:
        """Fetch what the model's runtime here reads (not the other runtimes' weights), load it."""
        name, framework = key
        description = self._store.describe(name)
        runtime = runtime_for(framework, name, description.files, self._settings)
        fetched = self._store.fetch(name, files_for_runtime(runtime, description.files))
        backend = load_backend(framework, fetched.path, self._settings, runtime)
        return LoadedModel(backend, fetched)


def _rows(prompts: Sequence[Prompt], choices: int) -> list[Prompt]:
    """Each prompt `choices` times, side by side: a row per choice."""
    return [prompt for prompt in prompts for _ in range(choices)]


def _close_quietly(loaded: LoadedModel) -> None:
    """An evicted model's engine finishes what it runs, then its thread ends; nobody waits."""
    loaded.backend.engine.close(timeout=0)


def _missing_framework_message(name: str, framework: Framework) -> str:
    if framework is Framework.TENSORFLOW:
        return (
            f"model '{name}' has no TensorFlow export; create one with "
            f"`textgen export-tf <model folder>` and publish it, or use framework 'pt'"
        )
    return f"model '{name}' has no PyTorch weights (model.safetensors) in the store"


__all__ = ["Generation", "GenerationRequest", "GenerationResult", "GenerationService"]
