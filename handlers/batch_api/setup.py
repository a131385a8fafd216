"""The Batch API's parts, put together from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from handlers.batch_api.batches import BatchService
from handlers.batch_api.blobs import LocalBlobs
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
    queue: LocalChunkQueue

    async def start(self) -> None:
        await self.queue.start(self.batches)

    async def stop(self) -> None:
        await self.queue.stop()


def local_batch_api(settings: Settings, serving: OpenAIServing) -> BatchApi:
    """Files and batches in BATCH_DIR, chunks run on this process' engines."""
    blobs = LocalBlobs(settings.batch_dir)
    files, records = FileStore(blobs), BatchRecords(blobs)
    runner = BatchRunner(files, records, blobs, serving, in_flight=settings.max_batch_size)
    queue = LocalChunkQueue(runner)
    batches = BatchService(files, records, blobs, queue, serving.check, settings)
    return BatchApi(files, batches, queue)
