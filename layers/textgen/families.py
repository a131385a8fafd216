"""Model families (architectures) and frameworks, read from a model folder's own files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path, PurePosixPath

from textgen.errors import UnsupportedModel


class Family(StrEnum):
    GPT2 = "gpt2"
    LLAMA = "llama"


class Framework(StrEnum):
    PYTORCH = "pt"
    TENSORFLOW = "tf"


CONFIG_FILE = "config.json"
UNKNOWN_FAMILY = "unknown"  # listed, but not servable: its config.json could not be read
TF_EXPORT_DIR = "tf"
# Inside TF_EXPORT_DIR, beside the SavedModel: what serving needs besides tensorflow.
TF_METADATA_FILE = "textgen.json"
TF_TOKENIZER_FILE = "tokenizer.json"
TF_PICKLED_TOKENIZER_FILE = "tokenizer.pkl"  # the original app's joblib pickle; opt-in only
TF_SIGNATURE = "serving_default"
_PYTORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def read_model_type(config_text: str, model_name: str) -> str:
    try:
        config = json.loads(config_text)
    except json.JSONDecodeError as exc:
        raise UnsupportedModel(
            f"model '{model_name}' has an unreadable {CONFIG_FILE}: {exc}"
        ) from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModel(f"model '{model_name}' has no model_type in its {CONFIG_FILE}")
    return model_type


def frameworks_in(model_dir: Path) -> tuple[Framework, ...]:
    return frameworks_of(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*"))


def frameworks_of(relative_paths: Iterable[str]) -> tuple[Framework, ...]:
    """Frameworks a model can be served with, judged from the paths of its files."""
    paths = [PurePosixPath(p) for p in relative_paths]
    found: list[Framework] = []
    if any(len(p.parts) == 1 and p.match(pattern) for p in paths for pattern in _PYTORCH_WEIGHTS):
        found.append(Framework.PYTORCH)
    if PurePosixPath(TF_EXPORT_DIR, "saved_model.pb") in paths:
        found.append(Framework.TENSORFLOW)
    return tuple(found)
