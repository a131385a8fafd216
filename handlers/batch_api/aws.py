"""The Batch API on AWS's own engines: files and batch records in S3 (a record changed by S3's
conditional writes: If-Match on the ETag read, If-None-Match to create), chunks on SQS for the
workers (Lambda's SQS event source, or `textgen batch-worker` polling as Lambda's poller does)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

from handlers.batch_api.blobs import check_key
from textgen.errors import StoreUnavailable

_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_SQS_BATCH = 10  # entries per SendMessageBatch, SQS's most


def _error_code(exc: Exception) -> str | None:
    """botocore's ClientError code (botocore is imported by the client, not here: the handler's
    import stays without it)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


class S3Blobs:
    """`make_client` is called on first use: a cold start pays for boto3 only when the Batch
    API is called."""

    def __init__(self, make_client: Callable[[], Any], bucket: str, prefix: str) -> None:
        self._make_client, self._bucket, self._prefix = make_client, bucket, prefix.strip("/")

    @cached_property
    def _s3(self) -> Any:
        return self._make_client()

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        found = self.read(key)
        if found is None:
            raise KeyError(key)
        return found[0]

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            got = self._s3.get_object(Bucket=self._bucket, Key=self._key(key))
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                return None
            raise
        return got["Body"].read(), got["ETag"]

    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        condition = {"IfMatch": tag} if tag is not None else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data, **condition)
        except Exception as exc:
            if _error_code(exc) in _LOST_RACE:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._key(key))

    def keys(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) + "/"
        start = len(self._prefix) + 1 if self._prefix else 0
        found: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=full
        ):
            found.extend(item["Key"][start:] for item in page.get("Contents", []))
        return sorted(found)


class SqsChunkQueue:
    """One message per chunk: `{"batch_id", "chunk"}`."""

    def __init__(self, make_client: Callable[[], Any], queue_url: str) -> None:
        self._make_client, self._url = make_client, queue_url

    @cached_property
    def _sqs(self) -> Any:
        return self._make_client()

    def check_ready(self) -> None:
        """SQS takes messages whenever it answers; a failure to send is the error."""

    def send(self, batch_id: str, chunks: Iterable[int]) -> None:
        indexes = list(chunks)
        for start in range(0, len(indexes), _SQS_BATCH):
            entries = [
                {"Id": str(index), "MessageBody": chunk_message(batch_id, index)}
                for index in indexes[start : start + _SQS_BATCH]
            ]
            sent = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            if sent.get("Failed"):
                raise StoreUnavailable(
                    f"SQS refused chunks of batch {batch_id}: {sent['Failed'][0]}"
                )


def chunk_message(batch_id: str, index: int) -> str:
    return json.dumps({"batch_id": batch_id, "chunk": index})


def read_chunk_message(body: str) -> tuple[str, int]:
    message = json.loads(body)
    batch_id, index = message["batch_id"], message["chunk"]
    if not isinstance(batch_id, str) or not isinstance(index, int):
        raise ValueError(f"not a chunk message: {body[:200]!r}")
    return batch_id, index


def sqs_client() -> Any:
    """An SQS client from the standard AWS configuration chain (AWS_ENDPOINT_URL_SQS or
    AWS_ENDPOINT_URL for a local server)."""
    import boto3

    return boto3.session.Session().client("sqs")
