"""Tokenizers for TensorFlow exports: tokenizer.json by default, a joblib pickle only by opt-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tokenizers import Tokenizer

from textgen.errors import ArtifactCorrupt, UnsupportedModel
from textgen.manifest import MANIFEST_FILE, parse_manifest, sha256_of
from textgen.model_files import TF_EXPORT_DIR, TF_PICKLED_TOKENIZER_FILE, TF_TOKENIZER_FILE


class ExportTokenizer(Protocol):
    def encode_batch(self, prompts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...


class JsonTokenizer:
    def __init__(self, path: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(path))

    def encode_batch(self, prompts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(prompts)]

    def decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text


class PickledTokenizer:
    """A tokenizer object as the original app pickled it: a `tokenizers.Tokenizer`, or any object
    with the Hugging Face tokenizer call shape (`tok(texts)["input_ids"]`, `tok.decode`)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode_batch(self, prompts: list[str]) -> list[list[int]]:
        if isinstance(self._tokenizer, Tokenizer):
            return [e.ids for e in self._tokenizer.encode_batch(prompts)]
        return [list(ids) for ids in self._tokenizer(prompts)["input_ids"]]

    def decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text


def load_export_tokenizer(model_dir: Path, allow_pickle: bool) -> ExportTokenizer:
    export = model_dir / TF_EXPORT_DIR
    if (export / TF_TOKENIZER_FILE).is_file():
        return JsonTokenizer(export / TF_TOKENIZER_FILE)
    pickled = export / TF_PICKLED_TOKENIZER_FILE
    if not pickled.is_file():
        raise UnsupportedModel(f"the TensorFlow export of '{model_dir.name}' has no tokenizer")
    if not allow_pickle:
        raise UnsupportedModel(
            f"the TensorFlow export of '{model_dir.name}' has only a pickled tokenizer "
            f"({TF_EXPORT_DIR}/{TF_PICKLED_TOKENIZER_FILE}); unpickling can run arbitrary code, so "
            f"it is off. Add {TF_TOKENIZER_FILE}, or set ALLOW_PICKLE_TOKENIZERS=true to trust it"
        )
    _check_against_manifest(model_dir, f"{TF_EXPORT_DIR}/{TF_PICKLED_TOKENIZER_FILE}")
    import joblib

    return PickledTokenizer(joblib.load(pickled))


def _check_against_manifest(model_dir: Path, relative: str) -> None:
    """Where the model's manifest lists the pickle, only bytes matching its sha256 are unpickled."""
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return
    entry = parse_manifest(manifest_path.read_bytes(), model_dir.name).files.get(relative)
    if entry is not None and sha256_of(model_dir / relative) != entry.sha256:
        raise ArtifactCorrupt(
            f"model '{model_dir.name}': file '{relative}' does not match its sha256 in the "
            "manifest; it was not unpickled",
            file=relative,
        )
