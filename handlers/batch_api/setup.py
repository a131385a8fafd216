"""The Batch API's parts, put together from the settings: in BATCH_DIR with chunks on this
process' loop, or in S3 with chunks on SQS for the workers (handlers/batch_worker.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.batch_api.batches import BatchService, ChunkQueue
from handlers.batch_api.blobs import Blobs, LocalBlobs
from handlers.batch_api.files import FileStore
from handlers.batch_api.local_queue import LocalChunkQueue
from handlers.batch_api.records import BatchRecords
from handlers.batch_api.runner import BatchRunner
from handlers.openai_api.serving import OpenAIServing
from textgen.settings import Settings


@dataclass(frozen=True)
class BatchApi:
    files: FileStore
    batches: BatchService
    local: LocalChunkQueue | None  # chunks run here (no AWS settings)

    async def start(self) -> None:
        if self.local is not None:
            await self.local.start(self.batches)

    async def stop(self) -> None:
        if self.local is not None:
            await self.local.stop()


def blobs_for(settings: Settings) -> Blobs:
    if settings.batch_bucket:
        from handlers.batch_api.aws import S3Blobs

        def s3_client() -> Any:
            from textgen.store.s3 import s3_client_for  # boto3: once the Batch API is called

            return s3_client_for(settings)

        return S3Blobs(s3_client, settings.batch_bucket, settings.batch_prefix)
    return LocalBlobs(settings.batch_dir)


def runner_for(settings: Settings, serving: OpenAIServing, blobs: Blobs) -> BatchRunner:
    files, records = FileStore(blobs), BatchRecords(blobs)
    return BatchRunner(files, records, blobs, serving, in_flight=settings.max_batch_size)


def batch_api_for(settings: Settings, serving: OpenAIServing) -> BatchApi:
    blobs = blobs_for(settings)
    runner = runner_for(settings, serving, blobs)
    files, records = runner.files, runner.records
    local: LocalChunkQueue | None = None
    queue: ChunkQueue
    if settings.batch_queue_url:
        from handlers.batch_api.aws import SqsChunkQueue, sqs_client

        queue = SqsChunkQueue(sqs_client, settings.batch_queue_url)
    else:
        queue = local = LocalChunkQueue(runner)
    batches = BatchService(
        files, records, blobs, queue, serving.check, runner.settle_overdue, settings
    )
    return BatchApi(files, batches, local)
