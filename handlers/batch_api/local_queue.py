"""The chunk queue without AWS: chunks run on this process' event loop, a few at a time, so a
batch's lines keep the engines' rows full across chunk boundaries. A process stopped mid-batch
takes its unfinished batches up again when it starts (their done chunks stay done)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from handlers.batch_api.batches import BatchService
from handlers.batch_api.runner import BatchRunner
from handlers.errors import BatchesUnavailable
from textgen.errors import ShuttingDown

logger = logging.getLogger(__name__)


class LocalChunkQueue:
    def __init__(self, runner: BatchRunner, workers: int = 2) -> None:
        self._runner = runner
        self._workers = workers
        self._queue: asyncio.Queue[tuple[str, int]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, batches: BatchService) -> None:
        """Start the workers on the running loop, with the batches a stopped process left."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]
        for record in await asyncio.to_thread(batches.unfinished):
            logger.info("taking up batch %s again", record.id)
            self.send(record.id, [i for i in range(len(record.chunk_starts))])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def check_ready(self) -> None:
        if self._loop is None or self._queue is None:  # no lifespan: Lambda, through Mangum
            raise BatchesUnavailable(
                "batches need a process that outlives its requests, or AWS to run them: "
                "set BATCH_BUCKET and BATCH_QUEUE_URL (docs/batches.md)"
            )

    def send(self, batch_id: str, chunks: Iterable[int]) -> None:
        """Queue the chunks (from the loop's thread or any other)."""
        self.check_ready()
        assert self._loop is not None and self._queue is not None
        queue = self._queue
        for index in chunks:
            self._loop.call_soon_threadsafe(queue.put_nowait, (batch_id, index))

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            batch_id, index = await self._queue.get()
            try:
                await self._runner.run_chunk(batch_id, index)
            except ShuttingDown:  # the chunk stays undone, and so do those queued after it
                logger.info("chunk %d of batch %s is left for the next start", index, batch_id)
                return
            except Exception:  # a chunk that failed stays undone: a restart runs it again
                logger.exception("chunk %d of batch %s failed", index, batch_id)
            finally:
                self._queue.task_done()
