"""Backends, one per framework, registered in one table and imported only when first used."""

from __future__ import annotations

import importlib
from pathlib import Path

from textgen.backends.base import Backend, Completion
from textgen.errors import BackendNotInstalled
from textgen.families import Framework
from textgen.settings import Settings

# framework -> "module:function" building a Backend from a local model folder.
_LOADERS: dict[Framework, str] = {
    Framework.PYTORCH: "textgen.backends.torch_backend:load_backend",
    Framework.TENSORFLOW: "textgen.backends.tf_backend:load_backend",
}
# The install extra that brings a framework's packages, where the base install lacks them.
_EXTRAS: dict[Framework, str] = {Framework.TENSORFLOW: "tf"}


def load_backend(framework: Framework, model_dir: Path, settings: Settings) -> Backend:
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
        extra = _EXTRAS.get(framework)
        remedy = f"; install the '{extra}' extra: pip install 'serverless-textgen[{extra}]'"
        raise BackendNotInstalled(
            f"framework '{framework}' needs a package this installation lacks ({exc})"
            + (remedy if extra else ""),
            framework=str(framework),
        ) from exc
    loader = getattr(module, function_name)
    backend: Backend = loader(model_dir, settings)
    return backend


__all__ = ["Backend", "Completion", "load_backend"]
