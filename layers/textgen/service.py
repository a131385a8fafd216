"""The generation service: validates a request, finds (or loads) the model, runs one batch."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textgen.backends import Completion, TextGenerator, load_generator
from textgen.errors import FrameworkUnavailable, InvalidRequest, WrongModelFamily
from textgen.families import Family, Framework
from textgen.metrics import Stopwatch, Throughput, Timing, throughput
from textgen.registry import ModelRegistry
from textgen.settings import Settings
from textgen.store import FetchedModel, ModelDescription, ModelStore

TASKS = ("text-generation",)


@dataclass(frozen=True)
class GenerationRequest:
    model_name: str
    prompts: list[str]
    task: str = "text-generation"
    framework: str = Framework.PYTORCH
    max_tokens: int = 200
    # time.monotonic() by which generation must stop, so the answer beats the caller's timeout.
    deadline: float | None = None


@dataclass(frozen=True)
class LoadedModel:
    generator: TextGenerator
    fetched: FetchedModel


@dataclass(frozen=True)
class GenerationResult:
    model: ModelDescription
    framework: Framework
    completions: list[Completion]
    throughput: Throughput
    timing: Timing


ModelKey = tuple[str, Framework]


class GenerationService:
    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.registry: ModelRegistry[ModelKey, LoadedModel] = ModelRegistry(
            self._load, capacity=settings.max_loaded_models
        )

    def generate(self, request: GenerationRequest, family: Family) -> GenerationResult:
        total = Stopwatch()
        framework = self._validate(request)
        model = self.store.describe(request.model_name)
        if model.family != family:
            raise WrongModelFamily(
                f"model '{model.name}' is a {model.family} model; this endpoint serves {family} "
                f"models only (use /{model.family}_model)",
                family=model.family,
            )
        loaded, load_seconds = self._loaded(model, framework)
        generating = Stopwatch()
        completions = loaded.generator.generate(
            request.prompts, request.max_tokens, _seconds_until(request.deadline)
        )
        generate_seconds = generating.elapsed()
        fetched = loaded.fetched if load_seconds is not None else FetchedModel(loaded.fetched.path)
        return GenerationResult(
            model=model,
            framework=framework,
            completions=completions,
            throughput=throughput(
                len(request.prompts), sum(c.tokens for c in completions), generate_seconds
            ),
            timing=Timing(
                load_seconds=load_seconds or 0.0,
                fetch_seconds=fetched.fetch_seconds,
                download_bytes=fetched.downloaded_bytes,
                generate_seconds=generate_seconds,
                total_seconds=total.elapsed(),
                model_loaded=load_seconds is not None,
            ),
        )

    def preload(self, names: list[str]) -> None:
        """Load models before the first request (provisioned concurrency, GPU containers)."""
        for name in names:
            self._loaded(self.store.describe(name), Framework.PYTORCH)

    def list_models(self) -> list[ModelDescription]:
        return self.store.list_models()

    def _loaded(
        self, model: ModelDescription, framework: Framework
    ) -> tuple[LoadedModel, float | None]:
        if framework not in model.frameworks:
            raise FrameworkUnavailable(_missing_framework_message(model.name, framework))
        return self.registry.get((model.name, framework))

    def _load(self, key: ModelKey) -> LoadedModel:
        name, framework = key
        fetched = self.store.fetch(name)
        return LoadedModel(load_generator(framework, fetched.path, self.settings), fetched)

    def _validate(self, request: GenerationRequest) -> Framework:
        limits = self.settings
        if request.task not in TASKS:
            raise InvalidRequest(
                f"unknown task {request.task!r}; this service supports: {', '.join(TASKS)}",
                field="task",
            )
        if request.framework not in tuple(Framework):
            raise InvalidRequest(
                f"unknown framework {request.framework!r}; use one of: "
                + ", ".join(f.value for f in Framework),
                field="framework",
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
            if len(prompt) > limits.max_prompt_chars:
                raise InvalidRequest(
                    f"prompts[{index}] is {len(prompt)} characters, more than the limit of "
                    f"{limits.max_prompt_chars}",
                    field="prompts",
                )
        if not 1 <= request.max_tokens <= limits.max_new_tokens_cap:
            raise InvalidRequest(
                f"max_tokens must be between 1 and {limits.max_new_tokens_cap}, "
                f"got {request.max_tokens}",
                field="max_tokens",
            )
        return Framework(request.framework)


def _seconds_until(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    # Past the deadline already (a slow cold start): still answer with a first token.
    return max(deadline - time.monotonic(), 0.001)


def _missing_framework_message(name: str, framework: Framework) -> str:
    if framework is Framework.TENSORFLOW:
        return (
            f"model '{name}' has no TensorFlow export; create one with "
            f"`textgen export-tf <model folder>` and publish it, or use framework 'pt'"
        )
    return f"model '{name}' has no PyTorch weights (model.safetensors) in the store"
