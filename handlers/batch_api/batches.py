"""/v1/batches: a batch is checked whole when it is created (a bad file is a 400 naming its first
bad lines, nothing runs), cut into chunks put on the chunk queue, and read back from its record
as the chunks complete."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from handlers.batch_api.blobs import Blobs
from handlers.batch_api.files import FileStore
from handlers.batch_api.objects import (
    UPLOAD_PURPOSE,
    Batch,
    BatchRecord,
    CreateBatch,
    Page,
    RequestCounts,
)
from handlers.batch_api.pages import page
from handlers.batch_api.records import BatchRecords, batch_blob, new_batch_id
from handlers.batch_api.runner import INPUT
from handlers.errors import BatchFileInvalid
from handlers.openai_api.batch import ENDPOINTS, Body, jsonl_lines, parse_batch
from textgen.errors import InvalidRequest
from textgen.settings import Settings

_WINDOW = re.compile(r"^([1-9][0-9]*)([smh])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_WINDOW_S = 24 * 3600
_RUNNING = ("in_progress", "cancelling", "finalizing")


class ChunkQueue(Protocol):
    def check_ready(self) -> None:
        """Raise the error a caller should see where chunks cannot be run now."""
        ...

    def send(self, batch_id: str, chunks: Iterable[int]) -> None:
        """Have the batch's chunks run, each at least once."""
        ...


class BatchService:
    def __init__(
        self,
        files: FileStore,
        records: BatchRecords,
        blobs: Blobs,
        chunks: ChunkQueue,
        check: Callable[[Body], None],
        settle: Callable[[str], BatchRecord],
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._files = files
        self._check = check  # refuses a line's body as its endpoint would
        self._settle = settle  # finishes an overdue batch (BatchRunner.settle_overdue)
        self._records = records
        self._blobs = blobs
        self._chunks = chunks
        self._settings = settings
        self._clock = clock

    def create(self, owner: str, body: CreateBatch) -> Batch:
        if body.endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"endpoint {body.endpoint!r}: one of {', '.join(ENDPOINTS)}", field="endpoint"
            )
        window = completion_window_s(body.completion_window)
        self._chunks.check_ready()  # before anything is written
        source = self._files.get(owner, body.input_file_id)
        if source.purpose != UPLOAD_PURPOSE:
            raise InvalidRequest(
                f"file {source.id} has purpose {source.purpose!r}, not {UPLOAD_PURPOSE!r}",
                field="input_file_id",
            )
        data = self._files.content(owner, source.id)
        try:
            lines = jsonl_lines(data)
        except UnicodeDecodeError as exc:
            raise BatchFileInvalid(f"the batch file is not UTF-8 text: {exc}") from None
        requests = parse_batch(lines, self._check, body.endpoint, self._settings.max_body_bytes)
        if len(requests) > self._settings.max_batch_lines:
            raise BatchFileInvalid(
                f"the batch file has {len(requests)} requests, more than the "
                f"{self._settings.max_batch_lines} one batch may hold (MAX_BATCH_LINES)"
            )
        now = int(self._clock())
        record = BatchRecord(
            id=new_batch_id(),
            owner=owner,
            endpoint=body.endpoint,
            input_file_id=source.id,
            completion_window=body.completion_window,
            status="in_progress",
            created_at=now,
            in_progress_at=now,
            expires_at=now + window,
            request_counts=RequestCounts(total=len(requests)),
            metadata=body.metadata,
            chunk_starts=list(range(0, len(requests), self._settings.batch_chunk_lines)),
        )
        # The batch keeps its own copy: deleting the uploaded file does not lose its lines.
        self._blobs.put(batch_blob(record.id, INPUT), data)
        self._records.create(record)
        self._chunks.send(record.id, range(len(record.chunk_starts)))
        return record.public()

    def retrieve(self, owner: str, batch_id: str) -> Batch:
        return self._settled(self._records.owned(owner, batch_id)).public()

    def listing(self, owner: str, after: str | None, limit: int) -> Page:
        mine = [self._settled(r) for r in self._records.all() if r.owner == owner]
        mine.sort(key=lambda r: (r.created_at, r.id), reverse=True)  # newest first, as OpenAI
        return page([r.public() for r in mine], after, limit, newest_first=True)

    def cancel(self, owner: str, batch_id: str) -> Batch:
        """Stop the batch's chunks not yet taken; it finalizes with what is done."""
        self._records.owned(owner, batch_id)
        now = int(self._clock())

        def cancel(record: BatchRecord) -> bool:
            if record.status in ("cancelling", "cancelled"):
                return False
            if record.status not in ("validating", "in_progress"):
                raise InvalidRequest(
                    f"batch {batch_id} is {record.status}: only a running batch can be cancelled",
                    field="batch_id",
                )
            record.status, record.cancelling_at = "cancelling", now
            return True

        return self._records.update(batch_id, cancel).public()

    def _settled(self, record: BatchRecord) -> BatchRecord:
        """The batch, settled first if its window and the workers' grace are over (no
        scheduler: reading it is what settles it)."""
        grace = self._settings.batch_overdue_grace_s
        overdue = record.expires_at is not None and self._clock() >= record.expires_at + grace
        if overdue and record.status in _RUNNING:
            return self._settle(record.id)
        return record

    def unfinished(self) -> list[BatchRecord]:
        """Batches a stopped process left running (the local queue takes them up again)."""
        return [r for r in self._records.all() if r.status in _RUNNING]


def completion_window_s(window: str) -> int:
    """OpenAI takes "24h"; shorter windows ("30m", "90s") are taken too."""
    match = _WINDOW.match(window)
    seconds = int(match[1]) * _SECONDS[match[2]] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise InvalidRequest(
            f'completion_window {window!r}: a duration up to 24h, such as "24h"',
            field="completion_window",
        )
    return seconds
