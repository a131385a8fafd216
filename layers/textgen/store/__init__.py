"""Model stores: where models live. Every store hands out a local folder ready to load."""

from __future__ import annotations

from textgen.settings import Settings
from textgen.store.base import FetchedModel, ModelDescription, ModelStore, validate_model_name
from textgen.store.local import LocalModelStore


def open_store(uri: str, settings: Settings) -> ModelStore:
    """Pick the store implementation from the URI's scheme."""
    if not uri.startswith("s3://"):
        return LocalModelStore(uri)
    from textgen.store.disk_cache import DiskModelCache
    from textgen.store.native_s3 import NativeS3
    from textgen.store.s3 import S3ModelStore

    return S3ModelStore(
        uri,
        client=NativeS3.for_settings(settings),
        cache=DiskModelCache(
            settings.model_cache_dir,
            max_bytes=settings.model_cache_max_bytes,
            parallel_files=settings.s3_parallel_files,
            verify=settings.verify_cached_models,
        ),
    )


__all__ = [
    "FetchedModel",
    "LocalModelStore",
    "ModelDescription",
    "ModelStore",
    "open_store",
    "validate_model_name",
]
