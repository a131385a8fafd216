"""Backends, one per framework, registered in one table and imported only when first used."""

from __future__ import annotations

import importlib
from pathlib import Path

from textgen.backends.base import Completion, FinishReason, TextGenerator
from textgen.errors import BackendNotInstalled
from textgen.families import Framework
from textgen.settings import Settings

# framework -> "module:function" building a TextGenerator from a local model folder.
_LOADERS: dict[Framework, str] = {
    Framework.PYTORCH: "textgen.backends.torch_backend:load_generator",
    Framework.TENSORFLOW: "textgen.backends.tf_backend:load_generator",
}


def load_generator(framework: Framework, model_dir: Path, settings: Settings) -> TextGenerator:
    target = _LOADERS.get(framework)
    if target is None:
        raise BackendNotInstalled(
            f"framework '{framework}' has no backend in this build; supported: "
            + ", ".join(sorted(_LOADERS)),
            framework=str(framework),
        )
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendNotInstalled(
            f"framework '{framework}' needs a package this installation lacks: {exc}",
            framework=str(framework),
        ) from exc
    loader = getattr(module, function_name)
    generator: TextGenerator = loader(model_dir, settings)
    return generator


__all__ = ["Completion", "FinishReason", "TextGenerator", "load_generator"]
