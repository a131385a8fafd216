"""Running a batch, one chunk at a time on whatever worker gets it, exactly once in effect.

A chunk's lines run together on the engines (background priority: interactive requests start
first); its output lines and error lines are written whole under a run id of their own, and only
then is that run counted as the chunk's on the batch's record (compare-and-swap: the first run
counted is the chunk's). A worker that dies mid-chunk wrote nothing the batch counts: the chunk
comes back (SQS, or the local queue on restart) and runs again. A chunk delivered twice is
counted once; the other run's lines are never read. Whoever counts the last chunk finalizes: the
counted runs' lines concatenated in chunk order into the output and error files (ids derived
from the batch's, so finalizing twice writes the same files), then the final status. A chunk
taken after the batch was cancelled, or after its completion window ended, runs nothing: its
lines go to the error file as batch_cancelled or batch_expired; and a batch whose chunks were
not all taken by the end of its window (and a grace for the workers) is settled so when it is
next read (BatchService), no worker needed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from handlers.batch_api.blobs import Blobs
from handlers.batch_api.files import FileStore
from handlers.batch_api.objects import FINAL_STATUSES, OUTPUT_PURPOSE, BatchRecord
from handlers.batch_api.records import BatchRecords, batch_blob
from handlers.openai_api.batch import BatchRequest, jsonl_lines, parse_batch, run_batch
from handlers.openai_api.serving import OpenAIServing

INPUT = "input.jsonl"


class BatchRunner:
    def __init__(
        self,
        files: FileStore,
        records: BatchRecords,
        blobs: Blobs,
        serving: OpenAIServing,
        in_flight: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.files = files
        self.records = records
        self._blobs = blobs
        self._serving = serving
        self._in_flight = in_flight
        self._clock = clock
        self._parsed: dict[str, list[BatchRequest]] = {}  # the latest batch's input, parsed

    async def run_chunk(self, batch_id: str, index: int) -> None:
        record = await asyncio.to_thread(self.records.get, batch_id)
        if record is None or record.status in FINAL_STATUSES:
            return
        if index in record.counted_runs or not record.taking_chunks:
            # Delivered again, or taken after the batch was settled: at most its finalizing
            # is left (a finalizer that died).
            if record.all_chunks_done or not record.taking_chunks:
                await asyncio.to_thread(self.finalize, batch_id)
            return
        requests = await asyncio.to_thread(self._chunk_requests, record, index)
        if unrun := self._unrun(record, requests):
            lines, expired = unrun
        else:
            lines, expired = await run_batch(self._serving, requests, self._in_flight), False
        record = await asyncio.to_thread(self._record_chunk, batch_id, index, lines, expired)
        if record.all_chunks_done:
            await asyncio.to_thread(self.finalize, batch_id)

    def settle_overdue(self, batch_id: str) -> BatchRecord:
        """A batch whose chunks were not all taken in its window (and the grace after it):
        each chunk not done is written as a worker taking it now would (its lines expired, or
        cancelled), then the batch finalizes. No worker has to come back for it."""
        record = self.records.get(batch_id)
        assert record is not None
        for index in range(len(record.chunk_starts)):
            if index not in record.counted_runs and record.taking_chunks:
                requests = self._chunk_requests(record, index)
                lines, expired = self._unrun(record, requests, now=math.inf) or ([], False)
                record = self._record_chunk(batch_id, index, lines, expired)
        return self.finalize(batch_id)

    def _unrun(
        self, record: BatchRecord, requests: list[BatchRequest], now: float | None = None
    ) -> tuple[list[dict[str, Any]], bool] | None:
        """A chunk's lines where it must not run (cancelled, or out of time), and whether it
        expired; None where it runs."""
        if record.status == "cancelling":
            return [
                _unrun(r, "batch_cancelled", "the batch was cancelled") for r in requests
            ], False
        now = self._clock() if now is None else now
        if record.expires_at is not None and now >= record.expires_at:
            message = "the batch's completion window ended before this request ran"
            return [_unrun(r, "batch_expired", message) for r in requests], True
        return None

    def _chunk_requests(self, record: BatchRecord, index: int) -> list[BatchRequest]:
        if record.id not in self._parsed:
            lines = jsonl_lines(self._blobs.get(batch_blob(record.id, INPUT)))
            # Checked whole at create; a body refused now (the limits changed since) is its
            # line's error when it runs, not a chunk that never can.
            requests = parse_batch(lines, endpoint=record.endpoint)
            self._parsed = {record.id: requests}
        starts = [*record.chunk_starts, record.request_counts.total]
        return self._parsed[record.id][starts[index] : starts[index + 1]]

    def _record_chunk(
        self, batch_id: str, index: int, lines: list[dict[str, Any]], expired: bool
    ) -> BatchRecord:
        """Write the chunk's lines under a run of their own, then count that run (once: the
        first to be counted is the chunk's, whatever else ran it)."""
        run = uuid.uuid4().hex[:16]
        succeeded = [line for line in lines if _succeeded(line)]
        failed = [line for line in lines if not _succeeded(line)]
        self._blobs.put(_chunk_blob(batch_id, index, run, "out"), _jsonl(succeeded))
        self._blobs.put(_chunk_blob(batch_id, index, run, "err"), _jsonl(failed))

        def count(record: BatchRecord) -> bool:
            if index in record.counted_runs or not record.taking_chunks:
                return False
            record.counted_runs[index] = run
            record.request_counts.completed += len(succeeded)
            record.request_counts.failed += len(failed)
            if expired:
                record.expired_chunks.append(index)
            return True

        return self.records.update(batch_id, count)

    def finalize(self, batch_id: str) -> BatchRecord:
        """The output and error files from the chunks' lines, then the batch's final status."""

        def begin(record: BatchRecord) -> bool:
            if record.status in FINAL_STATUSES or record.status == "finalizing":
                return False
            record.status, record.finalizing_at = "finalizing", int(self._clock())
            return True

        record = self.records.update(batch_id, begin)
        if record.status in FINAL_STATUSES:
            return record
        output_id = self._write_file(record, "out", "output")
        error_id = self._write_file(record, "err", "errors")
        now = int(self._clock())

        def end(record: BatchRecord) -> bool:
            if record.status != "finalizing":
                return False
            record.output_file_id, record.error_file_id = output_id, error_id
            if record.cancelling_at is not None:
                record.status, record.cancelled_at = "cancelled", now
            elif record.expired_chunks:
                record.status, record.expired_at = "expired", now
            else:
                record.status, record.completed_at = "completed", now
            return True

        self._parsed.pop(batch_id, None)
        return self.records.update(batch_id, end)

    def _write_file(self, record: BatchRecord, kind: str, name: str) -> str | None:
        parts = [
            self._blobs.get(_chunk_blob(record.id, index, run, kind))
            for index, run in sorted(record.counted_runs.items())
        ]
        data = b"".join(parts)
        if not data:
            return None
        # Derived from the batch's id (random, and never shown to another owner): finalizing
        # again writes the same file.
        file_id = f"file-{uuid.uuid5(uuid.NAMESPACE_URL, f'{record.id}/{name}').hex}"
        filename = f"{record.id}_{name}.jsonl"
        self.files.create(record.owner, filename, OUTPUT_PURPOSE, data, file_id=file_id)
        return file_id


def _chunk_blob(batch_id: str, index: int, run: str, kind: str) -> str:
    return batch_blob(batch_id, f"chunks/{index:06d}-{run}.{kind}.jsonl")


def _succeeded(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return isinstance(response, dict) and response.get("status_code") == 200


def _unrun(request: BatchRequest, code: str, message: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": request.custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()
