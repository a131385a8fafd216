"""Where the Batch API keeps its files and batch records: keys to bytes, with a conditional
write (compare-and-swap on a version tag) so that workers racing on a batch's record never lose
each other's updates. A folder locally; an S3 bucket (conditional writes) on AWS."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def check_key(key: str) -> str:
    """Keys are the service's own (ids it made, checked before use); anything else is a bug."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"not a blob key: {key!r}")
    return key


class Blobs(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The key's bytes; KeyError where there are none."""
        ...

    def read(self, key: str) -> tuple[bytes, str] | None:
        """The key's bytes and their version tag, or None."""
        ...

    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Write only if the key is still at `tag` (None: only if it is absent)."""
        ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str) -> list[str]:
        """The keys under `prefix`, sorted."""
        ...


class LocalBlobs:
    """A folder: every write lands whole (a temporary file renamed over the key), and
    conditional writes hold a lock file, so several processes may share it."""

    def __init__(self, root: Path) -> None:
        self.root = root  # made when first written to
        self._thread_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.get(key)
        except KeyError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        from filelock import FileLock  # here: the handler's import stays without it

        self.root.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, FileLock(str(self.root / ".lock")):
            current = self.read(key)
            if (current[1] if current else None) != tag:
                return False
            self.put(key, data)
            return True

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        found = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return sorted(p.relative_to(self.root).as_posix() for p in found)
