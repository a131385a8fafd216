"""The local disk cache of models fetched from a remote store: verified, atomic, bounded.

Layout: <root>/<model>/<version>/ holds one complete, verified copy (version = manifest digest).
A version appears only by renaming a fully downloaded and verified staging folder into place, so a
crash or kill mid-download leaves a `.staging-*` folder that is never trusted and is removed by the
next fill. One file lock per model serialises fills across threads and worker processes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock, Timeout

from textgen.errors import ArtifactCorrupt, CacheBudgetExceeded
from textgen.store.manifest import Manifest, sha256_of

COMPLETE_MARKER = ".complete"
FetchFile = Callable[[str, Path], None]  # (relative path in the model, local destination)


class ModelCache:
    def __init__(self, root: Path, max_bytes: int, parallel_files: int = 4) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.parallel_files = parallel_files

    def version_dir(self, name: str, manifest: Manifest) -> Path:
        return self.root / name / manifest.digest[:32]

    def lookup(self, name: str, manifest: Manifest) -> Path | None:
        target = self.version_dir(name, manifest)
        marker = target / COMPLETE_MARKER
        if not marker.is_file():
            return None
        marker.touch()  # last use, for eviction order
        return target

    def fill(self, name: str, manifest: Manifest, fetch: FetchFile) -> Path:
        """The verified local copy of this model version, downloading it if no process has yet."""
        if cached := self.lookup(name, manifest):
            return cached
        if manifest.total_bytes > self.max_bytes:
            raise CacheBudgetExceeded(
                f"model '{name}' is {manifest.total_bytes} bytes, more than the cache budget of "
                f"{self.max_bytes} bytes (MODEL_CACHE_MAX_BYTES)",
                model_name=name,
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self._lock_path(name)):
            if cached := self.lookup(name, manifest):  # another process filled it meanwhile
                return cached
            self._remove_staging(name)
            self._make_room(manifest.total_bytes, keep=name)
            return self._download(name, manifest, fetch)

    def _download(self, name: str, manifest: Manifest, fetch: FetchFile) -> Path:
        target = self.version_dir(name, manifest)
        staging = target.parent / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            with ThreadPoolExecutor(max_workers=self.parallel_files) as pool:
                jobs = [
                    pool.submit(self._fetch_verified, name, path, manifest, staging, fetch)
                    for path in manifest.files
                ]
                for job in jobs:
                    job.result()
            (staging / COMPLETE_MARKER).touch()
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._remove_other_versions(name, keep=target)
        return target

    @staticmethod
    def _fetch_verified(
        name: str, path: str, manifest: Manifest, staging: Path, fetch: FetchFile
    ) -> None:
        destination = staging / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        fetch(path, destination)
        expected = manifest.files[path]
        size = destination.stat().st_size
        if size != expected.size:
            raise ArtifactCorrupt(
                f"model '{name}': file '{path}' is {size} bytes, the manifest says {expected.size}",
                file=path,
            )
        if sha256_of(destination) != expected.sha256:
            raise ArtifactCorrupt(
                f"model '{name}': file '{path}' does not match its sha256 in the manifest",
                file=path,
            )

    def _make_room(self, needed: int, keep: str) -> None:
        versions = sorted(
            self._complete_versions(), key=lambda p: (p / COMPLETE_MARKER).stat().st_mtime
        )
        used = sum(_size_of(v) for v in versions)
        for version in versions:
            if used + needed <= self.max_bytes:
                return
            model = version.parent.name
            if model == keep:
                continue
            try:  # never evict a model another process is filling right now
                with FileLock(self._lock_path(model), timeout=0):
                    used -= _size_of(version)
                    shutil.rmtree(version, ignore_errors=True)
            except Timeout:
                continue

    def _complete_versions(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [m.parent for m in self.root.glob(f"*/*/{COMPLETE_MARKER}")]

    def _remove_staging(self, name: str) -> None:
        for stale in (self.root / name).glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def _remove_other_versions(self, name: str, keep: Path) -> None:
        for version in (self.root / name).iterdir():
            if version != keep and not version.name.startswith("."):
                shutil.rmtree(version, ignore_errors=True)

    def _lock_path(self, name: str) -> Path:
        return self.root / f".{name}.lock"


def _size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
