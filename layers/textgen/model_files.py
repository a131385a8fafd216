"""The files of a model folder: what each framework needs, and what a folder's files tell."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from textgen.errors import InvalidRequest, UnsupportedModel
from textgen.families import Framework

CONFIG_FILE = "config.json"
PYTORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")

TF_EXPORT_DIR = "tf"
# Inside TF_EXPORT_DIR, beside the SavedModel: what serving needs besides tensorflow.
TF_SAVED_MODEL_FILE = "saved_model.pb"
TF_METADATA_FILE = "textgen.json"
TF_TOKENIZER_FILE = "tokenizer.json"
TF_PICKLED_TOKENIZER_FILE = "tokenizer.pkl"  # the original app's joblib pickle; opt-in only
TF_SIGNATURE = "serving_default"

# The fast CPU path's export (textgen export-onnx): the graph and what serving it needs.
ONNX_EXPORT_DIR = "onnx"
ONNX_MODEL_FILE = "model.onnx"
ONNX_PREFILL_FILE = "prefill.onnx"  # an older int8 export's per-token graph, beside model.onnx
ONNX_WEIGHTS_FILE = "model.onnx.data"  # the graph's large initializers, memory-mapped
ONNX_EMBEDDING_FILE = "embedding.npy"  # the token embedding table the graph takes as input
ONNX_EMBEDDING_INPUT = "embedding"  # that input's name
# An int8 export's table is 8-bit, each row with its scale: this file, and this input.
ONNX_EMBEDDING_SCALE_FILE = "embedding_scale.npy"
ONNX_EMBEDDING_SCALE_INPUT = "embedding_scale"
ONNX_METADATA_FILE = "textgen.json"
ONNX_EXPORT_FORMAT = 6  # bumped when the graph's inputs, outputs, files or weights change
# Format 3: weights inside the graph file, optimized at load (and an int8 export maybe in two
# graphs, its per-token one in prefill.onnx); still served. Format 4: textgen.convert.onnx_layout.
# Format 5: format 4 with each int8 product's outlier input channels in float32
# (textgen.convert.calibration); a format 4 export is served as it is and remade by ensure_export.
# Format 6: an int8 export's embedding table in 8 bits per row (embedding_scale.npy beside it),
# a quarter of format 5's float32 table to download and store.
ONNX_OPTIMIZED_FORMATS = (4, 5, ONNX_EXPORT_FORMAT)  # optimized at export
ONNX_READABLE_FORMATS = (3, *ONNX_OPTIMIZED_FORMATS)


def require_model_folder(model_dir: Path) -> Path:
    """`model_dir`, if it is a model folder (it holds config.json): what publishing or exporting
    it needs first."""
    if not (model_dir / CONFIG_FILE).is_file():
        raise InvalidRequest(f"{model_dir} is not a model folder: it has no {CONFIG_FILE}")
    return model_dir


def read_model_type(config_text: str, model_name: str) -> str:
    """The `model_type` of a model's config.json text."""
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


def folder_files(model_dir: Path) -> list[str]:
    """The relative paths of a local model folder's files."""
    return [p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()]


def has_onnx_export(relative_paths: Iterable[str]) -> bool:
    return f"{ONNX_EXPORT_DIR}/{ONNX_MODEL_FILE}" in set(relative_paths)


# The weights of each runtime (a runtime reads none of the others'): a model published with
# several (PyTorch weights, ONNX and TensorFlow exports) is fetched with those its runtime reads.
_RUNTIME_WEIGHTS = {"torch": "pytorch", "onnx": "onnx", "tensorflow": "tf"}


def files_for_runtime(runtime: str, relative_paths: Iterable[str]) -> list[str]:
    """Of a model's files, those `runtime` ("torch", "onnx", "tensorflow") may read: all but
    the other runtimes' weights (configuration, tokenizer and unknown files stay)."""
    wanted = _RUNTIME_WEIGHTS[runtime]
    return [path for path in relative_paths if _weights_of(path) in (None, wanted)]


def _weights_of(relative_path: str) -> str | None:
    path = PurePosixPath(relative_path)
    if len(path.parts) == 1 and any(path.match(pattern) for pattern in PYTORCH_WEIGHTS):
        return "pytorch"
    if path.parts[0] == ONNX_EXPORT_DIR and len(path.parts) > 1:
        return "onnx"
    if path.parts[0] == TF_EXPORT_DIR and len(path.parts) > 1:
        return "tf"
    return None


def frameworks_in_folder(model_dir: Path) -> tuple[Framework, ...]:
    """Frameworks a local model folder can be served with."""
    return frameworks_from_paths(folder_files(model_dir))


def frameworks_from_paths(relative_paths: Iterable[str]) -> tuple[Framework, ...]:
    """Frameworks a model can be served with, judged from the relative paths of its files."""
    paths = [PurePosixPath(p) for p in relative_paths]
    found: list[Framework] = []
    pytorch_weights = any(
        len(p.parts) == 1 and p.match(pattern) for p in paths for pattern in PYTORCH_WEIGHTS
    )
    # An ONNX export serves framework "pt" too (on a CPU), with or without the weights beside it.
    if pytorch_weights or has_onnx_export(p.as_posix() for p in paths):
        found.append(Framework.PYTORCH)
    if PurePosixPath(TF_EXPORT_DIR, TF_SAVED_MODEL_FILE) in paths:
        found.append(Framework.TENSORFLOW)
    return tuple(found)
