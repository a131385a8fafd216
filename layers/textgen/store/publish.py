"""Publishing a local model folder to S3, with its manifest, so S3 stores can serve it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from textgen.manifest import MANIFEST_FILE, Manifest, build_manifest
from textgen.model_files import require_model_folder
from textgen.store.base import validate_model_name
from textgen.store.s3 import parse_s3_uri, translate_s3_errors


def publish(
    model_dir: Path,
    destination: str,
    client: Any,
    transfer: TransferConfig,
    parallel_files: int = 4,
    on_bytes: Callable[[int], None] | None = None,
) -> Manifest:
    """Upload every file of `model_dir` to `s3://bucket/prefix/NAME/`, then its manifest.

    The manifest goes last: a reader that sees it can fetch every file it lists.
    """
    require_model_folder(model_dir)
    bucket, key_prefix = parse_s3_uri(destination)
    validate_model_name(key_prefix.rsplit("/", 1)[-1])
    manifest = build_manifest(model_dir)

    def upload(path: str) -> None:
        key = f"{key_prefix}/{path}"
        with translate_s3_errors(bucket, key):
            client.upload_file(
                str(model_dir / path), bucket, key, Config=transfer, Callback=on_bytes
            )

    with ThreadPoolExecutor(max_workers=parallel_files) as pool:
        for done in [pool.submit(upload, path) for path in manifest.files]:
            done.result()
    manifest_key = f"{key_prefix}/{MANIFEST_FILE}"
    with translate_s3_errors(bucket, manifest_key):
        client.put_object(
            Bucket=bucket,
            Key=manifest_key,
            Body=manifest.to_json().encode(),
            ContentType="application/json",
        )
    return manifest
