"""boto3's S3 client, for what writes to S3 (`textgen publish`, the Batch API's files): the
store itself reads through the CRT (textgen.store.native_s3), without importing boto3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from textgen.settings import Settings
from textgen.store.s3_common import store_error, unreachable_error


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


@contextmanager
def translate_s3_errors(
    bucket: str, key: str = "", model_name: str | None = None
) -> Iterator[None]:
    """Turn boto3's S3 failures into domain errors that say which failure it was."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise store_error(code, bucket, key, model_name, str(exc)) from exc
    except EndpointConnectionError as exc:
        raise unreachable_error(str(exc)) from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise store_error("", bucket, key, model_name, f"transfer failed: {exc}") from exc
