"""A model store in S3: s3://bucket/prefix/<model>/ holds a model folder and its manifest.json.

Freshness rule: a process reads a model's manifest the first time it needs that model and keeps it
for its lifetime; the disk cache is keyed by the manifest's digest, so a model republished under the
same name is downloaded by the next process (the next cold start), never mixed with the old files.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from textgen.errors import TextgenError
from textgen.families import UNKNOWN_FAMILY
from textgen.manifest import MANIFEST_FILE, Manifest, parse_manifest
from textgen.model_files import CONFIG_FILE, frameworks_from_paths, read_model_type
from textgen.store.base import FetchedModel, ModelDescription, validate_model_name
from textgen.store.disk_cache import DiskModelCache
from textgen.store.native_s3 import NativeS3, S3RequestFailed
from textgen.store.s3_common import parse_s3_uri, store_error, unreachable_error


class S3ModelStore:
    def __init__(self, uri: str, client: NativeS3, cache: DiskModelCache) -> None:
        self._bucket, self._prefix = parse_s3_uri(uri)
        self._client = client
        self._cache = cache
        self._manifests: dict[str, Manifest] = {}
        self._descriptions: dict[str, ModelDescription] = {}
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    def model_names(self) -> list[str]:
        base = f"{self._prefix}/" if self._prefix else ""
        with translate_s3_errors(self._bucket):
            prefixes = self._client.common_prefixes(self._bucket, base)
        return sorted(prefix[len(base) :].rstrip("/") for prefix in prefixes)

    def list_models(self) -> list[ModelDescription]:
        return [self._describe_listed(name) for name in self.model_names()]

    def describe(self, name: str) -> ModelDescription:
        with self._lock:
            known = self._descriptions.get(name)
        if known:
            return known
        manifest = self._manifest(name)
        family = manifest.extra.get("family")
        if not isinstance(family, str) or not family:
            family = read_model_type(self._read(name, CONFIG_FILE).decode("utf-8"), name)
        description = ModelDescription(
            name, family, frameworks_from_paths(manifest.files), tuple(manifest.files)
        )
        with self._lock:
            self._descriptions[name] = description
        return description

    def fetch(self, name: str, files: Collection[str] | None = None) -> FetchedModel:
        """The model's verified local copy: of the files named (what one runtime reads, a
        cached version of its own), or of all."""
        manifest = self._manifest(name)
        if files is not None:
            manifest = manifest.subset(files)

        def fetch(path: str, destination: Path) -> None:
            with translate_s3_errors(self._bucket, self._key(name, path), name):
                self._client.download(self._bucket, self._key(name, path), destination)

        return self._cache.fill(name, manifest, fetch)

    def _describe_listed(self, name: str) -> ModelDescription:
        try:
            return self.describe(name)
        except (TextgenError, ValueError):
            return ModelDescription(name=name, family=UNKNOWN_FAMILY, frameworks=())

    def _manifest(self, name: str) -> Manifest:
        validate_model_name(name)
        with self._lock:
            known = self._manifests.get(name)
        if known:
            return known
        manifest = parse_manifest(self._read(name, MANIFEST_FILE), name)
        with self._lock:
            return self._manifests.setdefault(name, manifest)

    def _read(self, name: str, path: str) -> bytes:
        with translate_s3_errors(self._bucket, self._key(name, path), name):
            return self._client.read(self._bucket, self._key(name, path))

    def _key(self, name: str, path: str) -> str:
        return "/".join(part for part in (self._prefix, name, path) if part)


@contextmanager
def translate_s3_errors(
    bucket: str, key: str = "", model_name: str | None = None
) -> Iterator[None]:
    """Turn S3 failures into domain errors that say which failure it was."""
    try:
        yield
    except S3RequestFailed as exc:
        if exc.unreachable:
            raise unreachable_error(str(exc)) from exc
        raise store_error(exc.code, bucket, key, model_name, str(exc)) from exc
