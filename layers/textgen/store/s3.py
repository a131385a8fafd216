"""A model store in S3: s3://bucket/prefix/<model>/ holds a model folder and its manifest.json.

Freshness rule: a process reads a model's manifest the first time it needs that model and keeps it
for its lifetime; the disk cache is keyed by the manifest's digest, so a model republished under the
same name is downloaded by the next process (the next cold start), never mixed with the old files.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from textgen.errors import ModelNotFound, StoreUnavailable, TextgenError
from textgen.families import UNKNOWN_FAMILY
from textgen.manifest import MANIFEST_FILE, Manifest, parse_manifest
from textgen.model_files import CONFIG_FILE, frameworks_from_paths, read_model_type
from textgen.settings import Settings
from textgen.store.base import FetchedModel, ModelDescription, validate_model_name
from textgen.store.disk_cache import DiskModelCache, HashingWriter

_MISSING = {"NoSuchKey", "404", "NotFound"}


def s3_client_for(settings: Settings) -> Any:
    """An S3 client from the standard AWS configuration chain (credentials, region, and
    AWS_ENDPOINT_URL_S3 for S3-compatible servers), retrying throttling and 5xx with backoff."""
    config = Config(
        retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
        max_pool_connections=settings.s3_max_concurrency * settings.s3_parallel_files,
    )
    return boto3.session.Session().client("s3", config=config)


def transfer_config_for(settings: Settings) -> TransferConfig:
    part = settings.s3_part_size_mb * 1024 * 1024
    return TransferConfig(
        multipart_threshold=part,
        multipart_chunksize=part,
        max_concurrency=settings.s3_max_concurrency,
        use_threads=True,
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix') without slashes at either end."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


class S3ModelStore:
    def __init__(
        self, uri: str, client: Any, cache: DiskModelCache, transfer: TransferConfig
    ) -> None:
        self._bucket, self._prefix = parse_s3_uri(uri)
        self._client = client
        self._cache = cache
        self._transfer = transfer
        self._manifests: dict[str, Manifest] = {}
        self._descriptions: dict[str, ModelDescription] = {}
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    def model_names(self) -> list[str]:
        base = f"{self._prefix}/" if self._prefix else ""
        with translate_s3_errors(self._bucket):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=base, Delimiter="/"
            )
            return sorted(
                common["Prefix"][len(base) :].rstrip("/")
                for page in pages
                for common in page.get("CommonPrefixes", [])
            )

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

        def fetch(path: str, writer: HashingWriter) -> None:
            with translate_s3_errors(self._bucket, self._key(name, path), name):
                self._client.download_fileobj(
                    self._bucket, self._key(name, path), writer, Config=self._transfer
                )

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
            body: bytes = self._client.get_object(Bucket=self._bucket, Key=self._key(name, path))[
                "Body"
            ].read()
            return body

    def _key(self, name: str, path: str) -> str:
        return "/".join(part for part in (self._prefix, name, path) if part)


@contextmanager
def translate_s3_errors(
    bucket: str, key: str = "", model_name: str | None = None
) -> Iterator[None]:
    """Turn S3 failures into domain errors that say which failure it was."""
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING and model_name:
            raise ModelNotFound(
                f"model '{model_name}' is not in the store ({where} is missing)",
                model_name=model_name,
            ) from exc
        if code == "NoSuchBucket":
            raise StoreUnavailable(f"bucket '{bucket}' does not exist") from exc
        if code in {"AccessDenied", "403", "Forbidden"}:
            raise StoreUnavailable(f"access denied to {where}; check the IAM policy") from exc
        raise StoreUnavailable(f"S3 error {code or 'unknown'} on {where}: {exc}") from exc
    except EndpointConnectionError as exc:
        raise StoreUnavailable(f"cannot reach the S3 endpoint: {exc}") from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise StoreUnavailable(f"S3 transfer of {where} failed: {exc}") from exc
