"""The one interface every model store satisfies, and the model-name rules they share."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from textgen.errors import InvalidModelName
from textgen.families import Framework

# Names become path segments (and S3 key segments): a strict alphabet keeps them from escaping.
# As the OpenAPI documents show it (a JSON Schema regular expression), and as checked here.
MODEL_NAME_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN.removeprefix("^").removesuffix("$"))


def validate_model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidModelName(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators",
            model_name=name,
        )
    return name


@dataclass(frozen=True)
class ModelDescription:
    name: str
    family: str
    frameworks: tuple[Framework, ...]
    files: tuple[str, ...] = ()  # relative paths of the model's files


@dataclass(frozen=True)
class FetchedModel:
    """A model's files in a local folder, and what getting them there cost this call."""

    path: Path
    downloaded_bytes: int = 0
    fetch_seconds: float = 0.0


class ModelStore(Protocol):
    @property
    def uri(self) -> str: ...

    def model_names(self) -> list[str]:
        """The names of the store's models, sorted, none of them read (cheaper than listing)."""
        ...

    def list_models(self) -> list[ModelDescription]: ...

    def describe(self, name: str) -> ModelDescription:
        """Family and frameworks of one model, without loading its weights."""
        ...

    def fetch(self, name: str, files: Collection[str] | None = None) -> FetchedModel:
        """A local folder holding the model's files (at least those named, all by default),
        ready to load."""
        ...
