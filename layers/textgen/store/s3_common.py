"""What the store's two S3 clients share (the CRT's for reading models, boto3's for publishing
and the Batch API): s3:// URIs, and what an S3 error code means for the service."""

from __future__ import annotations

from textgen.errors import ModelNotFound, StoreUnavailable, TextgenError

_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix') without slashes at either end."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


def store_error(
    code: str, bucket: str, key: str, model_name: str | None, detail: str
) -> TextgenError:
    """The domain error for S3's answer `code` to a request on s3://bucket/key."""
    where = f"s3://{bucket}/{key}"
    if code in _MISSING and model_name:
        return ModelNotFound(
            f"model '{model_name}' is not in the store ({where} is missing)", model_name=model_name
        )
    if code == "NoSuchBucket":
        return StoreUnavailable(f"bucket '{bucket}' does not exist")
    if code in _DENIED:
        return StoreUnavailable(f"access denied to {where}; check the IAM policy")
    return StoreUnavailable(f"S3 error {code or 'unknown'} on {where}: {detail}")


def unreachable_error(detail: str) -> StoreUnavailable:
    return StoreUnavailable(f"cannot reach the S3 endpoint: {detail}")
