"""The disk cache of models fetched from a remote store (S3): verified, atomic, bounded.

Layout: <root>/<model>/<version>/ holds one complete, verified copy (version = manifest digest).
A version appears only by renaming a fully downloaded and verified staging folder into place, so a
crash or kill mid-download leaves a staging folder that is never trusted and is removed by the
next fill. One file lock per model serialises fills across threads and worker processes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from textgen.errors import ArtifactCorrupt, CacheBudgetExceeded
from textgen.manifest import Manifest, sha256_of
from textgen.staging import remove_stale_staging, staged_folder
from textgen.store.base import FetchedModel

COMPLETE_MARKER = ".complete"
logger = logging.getLogger(__name__)


class HashingWriter:
    """Writes through to a file while computing its sha256, so no second read is needed.

    It says it is not seekable: boto3's transfer manager then still fetches ranges concurrently
    but hands them over in order (retried ranges included), which is what a running hash needs.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


FetchFile = Callable[[str, HashingWriter], None]  # (path in the model, where to write it)
_SUBSET_SEPARATOR = "-"  # VERSION-SUBSET: some of a version's files (what one runtime reads)


class DiskModelCache:
    def __init__(
        self, root: Path, max_bytes: int, parallel_files: int = 4, verify: bool = True
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.parallel_files = parallel_files
        # Re-hash a cached copy the first time this process uses it: a file changed on disk
        # since it was verified (a bad disk, a hand edit) is caught, and fetched again.
        self.verify = verify
        self._verified: set[Path] = set()

    def version_dir(self, name: str, manifest: Manifest) -> Path:
        """Where a version's files lie; a subset of them (one runtime's) beside the whole."""
        folder = manifest.version[:32]
        if manifest.version != manifest.digest:
            folder += f"{_SUBSET_SEPARATOR}{manifest.digest[:12]}"
        return self.root / name / folder

    def lookup(self, name: str, manifest: Manifest) -> FetchedModel | None:
        target = self.version_dir(name, manifest)
        marker = target / COMPLETE_MARKER
        if not marker.is_file():
            return None
        marker.touch()  # last use, for eviction order
        return FetchedModel(target)

    def fill(self, name: str, manifest: Manifest, fetch: FetchFile) -> FetchedModel:
        """The verified local copy of this model version, downloading it if no process has yet."""
        if cached := self._trusted(name, manifest):
            return cached
        if manifest.total_bytes > self.max_bytes:
            raise CacheBudgetExceeded(
                f"model '{name}' is {manifest.total_bytes} bytes, more than the cache budget of "
                f"{self.max_bytes} bytes (MODEL_CACHE_MAX_BYTES)",
                model_name=name,
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self._lock_path(name)):
            if cached := self._trusted(name, manifest):  # another process filled it meanwhile
                return cached
            remove_stale_staging(self.root / name)
            self._make_room(manifest.total_bytes, keep=name)
            return self._download(name, manifest, fetch)

    def _trusted(self, name: str, manifest: Manifest) -> FetchedModel | None:
        """The cached copy, if there is one and it still matches its manifest (else removed)."""
        cached = self.lookup(name, manifest)
        if cached is None or not self.verify or cached.path in self._verified:
            return cached
        for path, entry in manifest.files.items():
            local = cached.path / path
            size = local.stat().st_size if local.is_file() else -1
            if size != entry.size or sha256_of(local) != entry.sha256:
                logger.warning("cached '%s' file %s changed on disk: fetching again", name, path)
                shutil.rmtree(cached.path, ignore_errors=True)
                return None
        self._verified.add(cached.path)
        return cached

    def _download(self, name: str, manifest: Manifest, fetch: FetchFile) -> FetchedModel:
        target = self.version_dir(name, manifest)
        started = time.perf_counter()
        try:
            with staged_folder(target) as staging:
                with ThreadPoolExecutor(max_workers=self.parallel_files) as pool:
                    # Largest first: the longest downloads start at once, small ones fill in.
                    by_size = sorted(manifest.files, key=lambda p: -manifest.files[p].size)
                    jobs = [
                        pool.submit(self._fetch_verified, name, path, manifest, staging, fetch)
                        for path in by_size
                    ]
                    for job in jobs:
                        job.result()
                (staging / COMPLETE_MARKER).touch()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The staging folder is gone again: what was partly written takes no room.
            raise CacheBudgetExceeded(
                f"the disk holding MODEL_CACHE_DIR ({self.root}) is full: model '{name}' "
                f"({manifest.total_bytes} bytes) does not fit; free room or lower "
                "MODEL_CACHE_MAX_BYTES below the free space",
                model_name=name,
            ) from exc
        self._remove_other_versions(name, keep=target)
        self._verified.add(target)  # hashed while it streamed in: no second pass this process
        return FetchedModel(target, manifest.total_bytes, time.perf_counter() - started)

    @staticmethod
    def _fetch_verified(
        name: str, path: str, manifest: Manifest, staging: Path, fetch: FetchFile
    ) -> None:
        destination = staging / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("wb") as handle:
            writer = HashingWriter(handle)
            fetch(path, writer)
        expected = manifest.files[path]
        if writer.size != expected.size:
            raise ArtifactCorrupt(
                f"model '{name}': file '{path}' is {writer.size} bytes, the manifest says "
                f"{expected.size}",
                file=path,
            )
        if writer.hexdigest() != expected.sha256:
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

    def _remove_other_versions(self, name: str, keep: Path) -> None:
        """Older versions of the model go; other subsets of this version stay."""
        kept_version = keep.name.split(_SUBSET_SEPARATOR)[0]
        for version in (self.root / name).iterdir():
            if version.name.startswith("."):
                continue
            if version.name.split(_SUBSET_SEPARATOR)[0] != kept_version:
                shutil.rmtree(version, ignore_errors=True)

    def _lock_path(self, name: str) -> Path:
        return self.root / f".{name}.lock"


def _size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
