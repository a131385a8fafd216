"""Model stores: where models live. Every store hands out a local folder ready to load."""

from __future__ import annotations

from typing import Any

from textgen.settings import Settings
from textgen.store.base import FetchedModel, ModelDescription, ModelStore, validate_model_name
from textgen.store.local import LocalModelStore


def open_store(uri: str, settings: Settings, s3_client: Any = None) -> ModelStore:
    """Pick the store implementation from the URI's scheme; an S3 client may be injected."""
    if not uri.startswith("s3://"):
        return LocalModelStore(uri)
    from textgen.store.disk_cache import DiskModelCache
    from textgen.store.s3 import S3ModelStore, s3_client_for, transfer_config_for

    return S3ModelStore(
        uri,
        client=s3_client or s3_client_for(settings),
        cache=DiskModelCache(
            settings.model_cache_dir,
            max_bytes=settings.model_cache_max_bytes,
            parallel_files=settings.s3_parallel_files,
            verify=settings.verify_cached_models,
        ),
        transfer=transfer_config_for(settings),
    )


__all__ = [
    "FetchedModel",
    "LocalModelStore",
    "ModelDescription",
    "ModelStore",
    "open_store",
    "validate_model_name",
]
