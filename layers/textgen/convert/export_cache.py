"""Exports kept by what they are made of: every file of the model folder (its exports aside), the
converter's own code and the versions of the libraries that do the work. With EXPORT_CACHE_DIR set,
an export of identical inputs is copied from there instead of being built again (a pipeline that
exports the same weights on every run, a notebook run again); any change is a new key."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from filelock import FileLock

from textgen.model_files import ONNX_EXPORT_DIR, TF_EXPORT_DIR
from textgen.staging import staged_folder

_COMPLETE = ".complete"
_EXPORTS = (TF_EXPORT_DIR, ONNX_EXPORT_DIR)


def export_key(model_dir: Path, converter: Iterable[Path], packages: Iterable[str]) -> str:
    """A digest of the model folder's files (not its exports), the converter's files (its code
    and data) and the installed versions of `packages`."""
    digest = hashlib.sha256()
    for path in converter:
        digest.update(f"{path.name}\0".encode() + path.read_bytes())
    for package in sorted(packages):
        digest.update(f"\0{package}=={importlib.metadata.version(package)}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(model_dir)
        if relative.parts[0] in _EXPORTS or relative.parts[0].startswith("."):
            continue
        digest.update(f"\0{relative.as_posix()}\0".encode())
        with path.open("rb") as data:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def cached_export(
    cache_dir: Path | None, model_dir: Path, export_dir: str, key: str, build: Callable[[], Path]
) -> tuple[Path, bool]:
    """MODEL_DIR/EXPORT_DIR, from the cache when it holds one of `key`, else built (and kept
    there); whether it came from the cache. Without a cache folder, built."""
    if cache_dir is None:
        return build(), False
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / f"{export_dir}-{key}"
    target = model_dir / export_dir
    with FileLock(str(cache_dir / f"{export_dir}-{key}.lock")):
        if (entry / _COMPLETE).is_file():
            with staged_folder(target) as staging:
                _copy(entry, staging)
            return target, True
        built = build()
        with staged_folder(entry) as staging:
            _copy(built, staging)
            (staging / _COMPLETE).write_text(key)
    return built, False


def _copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(_COMPLETE))
