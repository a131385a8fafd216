"""Domain errors: each names its kind; only the HTTP layer maps a kind to a status code."""

from __future__ import annotations

from typing import Any


class TextgenError(Exception):
    """Base of every error the engine raises on purpose."""

    kind = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(TextgenError):
    """A well-formed request asking for something outside the service's limits or abilities."""

    kind = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    """A prompt with the new tokens asked for does not fit the model's context."""


def prompt_label(name: str, index: int) -> str:
    """How an error names one prompt: `prompts[2]`, or as the caller's API calls it (OpenAI's
    `prompt[2]`); a conversation (`messages`) is the one prompt its chat template renders."""
    return "the conversation (messages)" if name == "messages" else f"{name}[{index}]"


class InvalidModelName(TextgenError):
    kind = "invalid_model_name"


class ModelNotFound(TextgenError):
    kind = "model_not_found"


class WrongModelFamily(TextgenError):
    kind = "wrong_model_family"


class UnsupportedModel(TextgenError):
    """The folder exists but holds no model this service can serve (e.g. an unreadable config)."""

    kind = "unsupported_model"


class FrameworkUnavailable(TextgenError):
    """The model has no export for the requested framework."""

    kind = "framework_unavailable"


class BackendNotInstalled(TextgenError):
    """The model has the export, but this build has no backend for that framework."""

    kind = "backend_not_installed"


class ModelLoadFailed(TextgenError):
    kind = "model_load_failed"


class StoreUnavailable(TextgenError):
    kind = "store_unavailable"


class ArtifactCorrupt(TextgenError):
    """A file from the store does not match its manifest (size, sha256), or the manifest is bad."""

    kind = "artifact_corrupt"


class CacheBudgetExceeded(TextgenError):
    kind = "cache_budget_exceeded"


class Overloaded(TextgenError):
    """The engine's queue is full: the caller should retry later (details say when)."""

    kind = "overloaded"


class ShuttingDown(TextgenError):
    """The service is stopping and takes no new requests."""

    kind = "shutting_down"


class DownloadFailed(TextgenError):
    """A pinned public artifact (a model, a data set) could not be fetched from its registry."""

    kind = "download_failed"
