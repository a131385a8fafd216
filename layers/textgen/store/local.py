"""A model store that is a local directory: one Hugging Face-format folder per model."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from textgen.errors import ModelNotFound, StoreUnavailable, TextgenError
from textgen.families import UNKNOWN_FAMILY
from textgen.model_files import CONFIG_FILE, folder_files, frameworks_from_paths, read_model_type
from textgen.store.base import FetchedModel, ModelDescription, validate_model_name


class LocalModelStore:
    def __init__(self, root: str | Path) -> None:
        self._root = Path(root).expanduser().resolve()

    @property
    def uri(self) -> str:
        return str(self._root)

    def model_names(self) -> list[str]:
        if not self._root.is_dir():
            raise StoreUnavailable(f"model store {self._root} does not exist or is not a directory")
        return [
            entry.name
            for entry in sorted(self._root.iterdir())
            if not entry.name.startswith(".") and (entry / CONFIG_FILE).is_file()
        ]

    def list_models(self) -> list[ModelDescription]:
        return [self._describe_listed(name) for name in self.model_names()]

    def _describe_listed(self, name: str) -> ModelDescription:
        # One unreadable folder must not hide the rest of the store from a listing.
        try:
            return self.describe(name)
        except TextgenError:
            return ModelDescription(name=name, family=UNKNOWN_FAMILY, frameworks=())

    def describe(self, name: str) -> ModelDescription:
        model_dir = self.fetch(name).path
        model_type = read_model_type((model_dir / CONFIG_FILE).read_text(encoding="utf-8"), name)
        files = folder_files(model_dir)
        return ModelDescription(name, model_type, frameworks_from_paths(files), tuple(files))

    def fetch(self, name: str, files: Collection[str] | None = None) -> FetchedModel:
        """The model's own folder (its files are all there already)."""
        validate_model_name(name)
        model_dir = (self._root / name).resolve()
        # Belt and braces: a symlink inside the store must not lead outside it either.
        if not model_dir.is_relative_to(self._root) or not (model_dir / CONFIG_FILE).is_file():
            raise ModelNotFound(f"model '{name}' is not in the store", model_name=name)
        return FetchedModel(model_dir)
