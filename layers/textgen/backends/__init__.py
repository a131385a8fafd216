"""Backends, registered in one table by runtime and imported only when first used.

framework "tf" runs on TensorFlow; framework "pt" on PyTorch, or on a CPU on ONNX Runtime where
the model has an ONNX export (textgen export-onnx) and CPU_RUNTIME allows it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from textgen.backends.base import Backend
from textgen.backends.imports import heavy_imports
from textgen.errors import BackendNotInstalled, FrameworkUnavailable
from textgen.families import Framework
from textgen.model_files import folder_files, has_onnx_export
from textgen.settings import Settings

# runtime -> "module:function" building a Backend from a local model folder, and what to do
# where this installation lacks the runtime's packages.
_LOADERS: dict[str, tuple[str, str]] = {
    # Only an installation made without torch (the Lambda image's WITH_TORCH=false) lacks it.
    "torch": (
        "textgen.backends.torch_backend:load_backend",
        "this installation serves ONNX exports only: create the model's with `textgen "
        "export-onnx <model folder>` and publish it, or install torch",
    ),
    "onnx": (
        "textgen.backends.onnx_backend:load_backend",
        "install onnxruntime (part of the base install): pip install onnxruntime",
    ),
    "tensorflow": (
        "textgen.backends.tf_backend:load_backend",
        "install the 'tf' extra: pip install 'serverless-textgen[tf]'",
    ),
}


def runtime_for(framework: Framework, model: str, files: Iterable[str], settings: Settings) -> str:
    """Which runtime serves this framework of a model here, judged from its files' paths
    (before they are fetched: a runtime's files are all it fetches)."""
    if framework is Framework.TENSORFLOW:
        return "tensorflow"
    exported = has_onnx_export(files)
    if settings.cpu_runtime == "onnx":
        if not exported:
            raise FrameworkUnavailable(
                f"model '{model}' has no ONNX export, which CPU_RUNTIME=onnx needs; "
                "create it with `textgen export-onnx <model folder>` and publish it"
            )
        return "onnx"
    if settings.cpu_runtime == "torch" or not exported or _on_gpu(settings):
        return "torch"
    return "onnx" if importlib.util.find_spec("onnxruntime") else "torch"


def _on_gpu(settings: Settings) -> bool:
    if settings.device != "auto":
        return settings.device == "cuda"
    # An NVIDIA device node, rather than importing torch (seconds) to ask it.
    return any(Path("/dev").glob("nvidia[0-9]*")) and importlib.util.find_spec("torch") is not None


def load_backend(
    framework: Framework, model_dir: Path, settings: Settings, runtime: str | None = None
) -> Backend:
    """The model folder loaded for `framework` by `runtime` (by default the one runtime_for
    picks from the folder's files)."""
    if runtime is None:
        runtime = runtime_for(framework, model_dir.name, folder_files(model_dir), settings)
    target, remedy = _LOADERS[runtime]
    module_name, function_name = target.split(":")
    with heavy_imports:  # one load at a time (see textgen.backends.imports)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendNotInstalled(
                f"framework '{framework}' ({runtime}) needs a package this installation lacks "
                f"({exc}); {remedy}",
                framework=str(framework),
            ) from exc
        loader = getattr(module, function_name)
        backend: Backend = loader(model_dir, settings)
    return backend


__all__ = ["Backend", "load_backend", "runtime_for"]
