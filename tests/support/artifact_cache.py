"""What the suite builds slowly (SmolLM2 converted from its pinned wheel, TensorFlow and ONNX
exports), kept across runs in a cache folder, each under a key made of everything it is built
from: the content of the code that builds it, the versions of the libraries that do the work, and
its inputs. A change to any of them is a new key, so a stale artifact is never used; an artifact
is visible only once complete (built under a temporary name, then renamed), and one build at a
time per artifact holds a file lock, so parallel workers share one build.

TEXTGEN_TEST_CACHE names the folder (CI can keep it between runs); by default it is under the
user's cache directory. Downloads go to its `downloads/`, checked by sha256 as always.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from filelock import FileLock

from tests.support.servers import REPO_ROOT

TEXTGEN = REPO_ROOT / "layers" / "textgen"
_COMPLETE = ".complete"


def cache_root() -> Path:
    configured = os.environ.get("TEXTGEN_TEST_CACHE")
    root = (
        Path(configured)
        if configured
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "serverless-textgen"
        / "tests"
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


def artifact_key(
    sources: Iterable[Path], packages: Iterable[str] = (), inputs: Iterable[str] = ()
) -> str:
    """A digest of the source files (folders: every .py file in them), the installed versions
    of `packages`, and any further `inputs` (other keys, pinned hashes, parameters)."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for source in sources:
        files.extend(sorted(source.rglob("*.py")) if source.is_dir() else [source])
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for package in sorted(packages):
        digest.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
    for value in inputs:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:20]


def cached_artifact(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """The folder `build` writes (it is given an empty folder to fill), built at most once per
    key. Callers must not change what is in it: copy it first (`copy_of`)."""
    root = cache_root()
    target = root / f"{name}-{key}"
    if (target / _COMPLETE).is_file():
        return target
    with FileLock(str(root / f"{name}.lock")):
        if (target / _COMPLETE).is_file():  # another worker built it meanwhile
            return target
        for stale in root.glob(f"{name}-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)  # an older key's, or a broken build
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            build(staging)
            (staging / _COMPLETE).write_text(key)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def copy_of(source: Path, target: Path) -> Path:
    """A copy of a cached folder (or part of one) that a test may change."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(_COMPLETE))
    return target


def folder_digest(folder: Path) -> str:
    """A digest of every file in a folder, by relative path and content: a model as an input."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
