"""Test models in the local S3 server: publishing them, and settings that serve them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from textgen.settings import Settings
from textgen.store.publish import publish

WEIGHTS = "model.safetensors"
REQUEST = {"model_name": "gpt2-test", "prompts": ["Hello from S3"], "max_tokens": 4}

# Fetches one model into a cache folder, in a process of its own; prints the local folder.
_FILL_SCRIPT = """
import sys
from textgen.settings import Settings
from textgen.store import open_store
uri, cache, name = sys.argv[1:]
settings = Settings(model_store=uri, model_cache_dir=cache, s3_part_size_mb=5)
print(open_store(uri, settings).fetch(name).path)
"""


def publish_models(client: Any, store_dir: Path, bucket: str, *names: str) -> None:
    for name in names or ("gpt2-test", "llama-test"):
        publish(store_dir / name, f"s3://{bucket}/models/{name}", client, TransferConfig())


def s3_settings(settings: Settings, bucket: str, cache: Path, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "model_store": f"s3://{bucket}/models",
            "model_cache_dir": cache,
            "s3_part_size_mb": 5,
            **changes,
        }
    )


def cached_versions(cache: Path, name: str) -> list[Path]:
    return sorted(p.parent for p in (cache / name).glob("*/.complete"))


def fill_command(bucket: str, cache: Path, name: str = "gpt2-test") -> list[str]:
    return [sys.executable, "-c", _FILL_SCRIPT, f"s3://{bucket}/models", str(cache), name]
