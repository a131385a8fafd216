"""Model stores: where models live. Every store hands out a local folder ready to load."""

from __future__ import annotations

from textgen.store.base import ModelDescription, ModelStore, validate_model_name
from textgen.store.local import LocalModelStore


def open_store(uri: str) -> ModelStore:
    """Pick the store implementation from the URI's scheme."""
    if uri.startswith("s3://"):
        from textgen.errors import StoreUnavailable

        raise StoreUnavailable("S3 model stores are not available in this build yet")
    return LocalModelStore(uri)


__all__ = ["LocalModelStore", "ModelDescription", "ModelStore", "open_store", "validate_model_name"]
