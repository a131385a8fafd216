"""manifest.json: the list of a published model's files, each with its size and sha256.

Shape (other tools read it too, keep it):
    {"files": {"<relative path>": {"size": <bytes>, "sha256": "<hex>"}}}
plus optional "family", "frameworks" and "created". A manifest holding only "files" is valid.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from textgen.errors import ArtifactCorrupt
from textgen.model_files import CONFIG_FILE, frameworks_in_folder, read_model_type

MANIFEST_FILE = "manifest.json"
_SUBSET_OF = "subset_of"  # in a subset's extra: the whole manifest's digest, never published
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileEntry]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    @property
    def digest(self) -> str:
        """Identifies this exact version of the model: the hash of its file list."""
        listing = json.dumps(
            {path: [e.size, e.sha256] for path, e in sorted(self.files.items())}, sort_keys=True
        )
        return hashlib.sha256(listing.encode()).hexdigest()

    @property
    def version(self) -> str:
        """The published version this manifest lists (a subset's: the whole one's digest)."""
        whole = self.extra.get(_SUBSET_OF)
        return whole if isinstance(whole, str) else self.digest

    def subset(self, paths: Collection[str]) -> Manifest:
        """The same version's manifest listing only `paths` (each must be in it)."""
        missing = sorted(set(paths) - self.files.keys())
        if missing:
            raise ValueError(f"not in the manifest: {', '.join(missing)}")
        files = {path: entry for path, entry in self.files.items() if path in paths}
        return Manifest(files=files, extra={**self.extra, _SUBSET_OF: self.version})

    def to_json(self) -> str:
        files = {
            path: {"size": e.size, "sha256": e.sha256} for path, e in sorted(self.files.items())
        }
        return json.dumps({**self.extra, "files": files}, indent=2, sort_keys=True) + "\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(model_dir: Path) -> Manifest:
    """The manifest of a local model folder: every file under it except the manifest itself."""
    files = {
        path.relative_to(model_dir).as_posix(): FileEntry(path.stat().st_size, sha256_of(path))
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE and not path.name.startswith(".")
    }
    extra: dict[str, Any] = {"created": datetime.now(UTC).isoformat(timespec="seconds")}
    config = model_dir / CONFIG_FILE
    if config.is_file():
        extra["family"] = read_model_type(config.read_text(encoding="utf-8"), model_dir.name)
    extra["frameworks"] = [str(f) for f in frameworks_in_folder(model_dir)]
    return Manifest(files=files, extra=extra)


def parse_manifest(raw: bytes, model_name: str) -> Manifest:
    try:
        document = json.loads(raw)
        files = document["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("'files' must be a non-empty object")
        entries = {_safe_path(path): _entry(spec) for path, spec in files.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactCorrupt(
            f"model '{model_name}' has an invalid {MANIFEST_FILE}: {exc}", file=MANIFEST_FILE
        ) from exc
    extra = {k: v for k, v in document.items() if k != "files"}
    return Manifest(files=entries, extra=extra)


def _entry(spec: Any) -> FileEntry:
    size, sha = spec["size"], spec["sha256"]
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"bad size {size!r}")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"bad sha256 {sha!r}")
    return FileEntry(size=size, sha256=sha)


def _safe_path(path: str) -> str:
    # A manifest comes from a bucket: its paths must not climb out of the model's folder.
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in path or path == MANIFEST_FILE:
        raise ValueError(f"unsafe file path {path!r}")
    return PurePosixPath(path).as_posix()
