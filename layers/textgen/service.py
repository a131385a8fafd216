"""The generation service: validates a request, finds (or loads) the model, and hands the request
to that model's engine, where it shares a batch with every other request for the model."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from textgen.backends import Backend, Completion, load_backend
from textgen.engine import EngineStats, Job, RequestHandle, SamplingParams, SequenceOutput
from textgen.errors import (
    FrameworkUnavailable,
    InvalidRequest,
    ShuttingDown,
    UnsupportedModel,
    WrongModelFamily,
)
from textgen.families import Family, Framework
from textgen.loaded_models import LoadedModels
from textgen.settings import Settings
from textgen.store import FetchedModel, ModelDescription, ModelStore
from textgen.timing import Stopwatch, Throughput, Timing, throughput

TASKS = ("text-generation",)


@dataclass(frozen=True)
class GenerationRequest:
    model_name: str
    prompts: list[str]
    family: Family | None  # the endpoint's family (another is refused), or None for any
    framework: Framework = Framework.PYTORCH
    task: str = "text-generation"
    max_tokens: int | None = None  # None: the configured DEFAULT_MAX_TOKENS
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # time.monotonic() by which generation must stop, so the answer beats the caller's timeout.
    deadline: float | None = None
    stream: bool = False  # each token as it comes, through the submission's handle.events()
    logprobs: int | None = None  # per generated token: its log-probability and this many others
    prompt_logprobs: bool = False  # each prompt token's log-probability (scoring text)
    special_tokens: bool = True  # False: the prompts carry their own (rendered chat templates)


@dataclass(frozen=True)
class LoadedModel:
    backend: Backend
    fetched: FetchedModel


@dataclass(frozen=True)
class Submission:
    """A request handed to its model's engine: wait on `handle`, then ask for the result."""

    request: GenerationRequest
    model: ModelDescription
    backend: Backend
    job: Job
    fetched: FetchedModel  # what getting the files cost this request (nothing once loaded)
    load_seconds: float | None  # None: the model was loaded already
    clock: Stopwatch

    @property
    def handle(self) -> RequestHandle:
        return self.job.handle


@dataclass(frozen=True)
class GenerationResult:
    model: ModelDescription
    framework: Framework
    task: str
    completions: list[Completion]
    throughput: Throughput
    timing: Timing


ModelKey = tuple[str, Framework]


class GenerationService:
    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self._settings = settings
        self._store = store
        self._closing = False
        self._models: LoadedModels[ModelKey, LoadedModel] = LoadedModels(
            self._load, capacity=settings.max_loaded_models, on_evict=_close_quietly
        )

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

    def submit(self, request: GenerationRequest) -> Submission:
        """Validate, load the model if needed (this blocks), and queue the request."""
        clock = Stopwatch()
        if self._closing:
            raise ShuttingDown("the service is shutting down and takes no new requests")
        max_tokens = self._validate(request)
        model = self._store_model(request.model_name, request.family)
        loaded, load_seconds = self._loaded(model, request.framework)
        backend = loaded.backend
        job = Job(
            prompts=request.prompts,
            prompt_ids=backend.encode(request.prompts, max_tokens, request.special_tokens),
            max_new_tokens=max_tokens,
            sampling=request.sampling,
            deadline=request.deadline,
            logprobs=request.logprobs,
            prompt_logprobs=request.prompt_logprobs,
            stream=request.stream,
        )
        backend.check(job)
        backend.engine.submit(job)
        fetched = loaded.fetched if load_seconds is not None else FetchedModel(loaded.fetched.path)
        return Submission(request, model, backend, job, fetched, load_seconds, clock)

    def result(self, submission: Submission, outputs: list[SequenceOutput]) -> GenerationResult:
        """What a finished submission produced, with its figures."""
        handle = submission.handle
        started = handle.started_at or handle.submitted_at
        generate_seconds = (handle.finished_at or time.monotonic()) - started
        completions = [Completion(o.text, o.token_ids, o.finish_reason) for o in outputs]
        return GenerationResult(
            model=submission.model,
            framework=submission.request.framework,
            task=submission.request.task,
            completions=completions,
            throughput=throughput(
                len(completions), sum(c.tokens for c in completions), generate_seconds
            ),
            timing=Timing(
                load_seconds=submission.load_seconds or 0.0,
                fetch_seconds=submission.fetched.fetch_seconds,
                download_bytes=submission.fetched.downloaded_bytes,
                queue_seconds=started - handle.submitted_at,
                generate_seconds=generate_seconds,
                total_seconds=submission.clock.elapsed(),
                model_loaded=submission.load_seconds is not None,
            ),
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Submit and wait, blocking this thread (for callers outside asyncio)."""
        submission = self.submit(request)
        return self.result(submission, submission.handle.result())

    def describe(self, name: str) -> ModelDescription:
        """A model of the store (ModelNotFound if it is not there)."""
        return self._store.describe(name)

    def chat_prompt(self, name: str, messages: list[dict[str, str]]) -> str:
        """`messages` rendered with the model's chat template (loading the model if needed)."""
        model = self._store_model(name, None)
        return self._loaded(model, Framework.PYTORCH)[0].backend.chat_prompt(messages)

    def load(self, name: str, framework: Framework) -> float | None:
        """Make sure a model is in memory; the seconds loading took, None if it was loaded."""
        return self._loaded(self._store.describe(name), framework)[1]

    def preload(self, models: list[tuple[str, Framework]]) -> None:
        """Load models before the first request (provisioned concurrency, GPU containers)."""
        for name, framework in models:
            self.load(name, framework)

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
        name, framework = key
        fetched = self._store.fetch(name)
        return LoadedModel(load_backend(framework, fetched.path, self._settings), fetched)

    def _validate(self, request: GenerationRequest) -> int:
        """Check the request against the limits; the number of new tokens it asks for."""
        limits = self._settings
        max_tokens = limits.default_max_tokens if request.max_tokens is None else request.max_tokens
        if request.task not in TASKS:
            raise InvalidRequest(
                f"unknown task {request.task!r}; this service supports: {', '.join(TASKS)}",
                field="task",
            )
        if not request.prompts:
            raise InvalidRequest("prompts must hold at least one prompt", field="prompts")
        if len(request.prompts) > limits.max_prompts:
            raise InvalidRequest(
                f"{len(request.prompts)} prompts is more than the limit of {limits.max_prompts}",
                field="prompts",
            )
        for index, prompt in enumerate(request.prompts):
            if not prompt:
                raise InvalidRequest(f"prompts[{index}] is empty", field="prompts")
            if bad := _unprintable(prompt):
                raise InvalidRequest(
                    f"prompts[{index}] holds {bad}, which a prompt may not", field="prompts"
                )
            if len(prompt) > limits.max_prompt_chars:
                raise InvalidRequest(
                    f"prompts[{index}] is {len(prompt)} characters, more than the limit of "
                    f"{limits.max_prompt_chars}",
                    field="prompts",
                )
        least = 0 if request.prompt_logprobs else 1  # 0 new tokens: scoring the prompt only
        if not least <= max_tokens <= limits.max_new_tokens_cap:
            raise InvalidRequest(
                f"max_tokens must be between {least} and {limits.max_new_tokens_cap}, "
                f"got {max_tokens}",
                field="max_tokens",
            )
        request.sampling.validate()
        return max_tokens


# Control characters other than tab, newline and carriage return; lone UTF-16 surrogates (JSON's
# "\ud800" escapes), which no text encoding can carry to the tokenizer.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _unprintable(text: str) -> str | None:
    found = _UNPRINTABLE.search(text)
    return None if found is None else f"the character U+{ord(found.group()):04X}"


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
