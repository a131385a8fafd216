"""A batch's chunks as workers run them, in-process on the tiny models: delivered twice, a
worker failing mid-chunk, the completion window ending between chunks. Each custom_id ends up
exactly once in the output or the error file, and the counts add up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.batch_api.batches import BatchService
from handlers.batch_api.blobs import LocalBlobs
from handlers.batch_api.files import FileStore
from handlers.batch_api.objects import BatchRecord, CreateBatch
from handlers.batch_api.records import BatchRecords
from handlers.batch_api.runner import BatchRunner
from handlers.openai_api.serving import OpenAIServing, Prepared
from tests.support.batch_files import completion_line, jsonl
from textgen.service import GenerationService
from textgen.settings import Settings
from textgen.store import open_store

OWNER = "owner"
LINES = 6
CHUNK = 2
GRACE = 900.0  # seconds after the window before a read settles an unfinished batch


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Chunks:
    """The chunk queue as a list the test hands out, as SQS would, in any order, any times."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def check_ready(self) -> None:
        pass

    def send(self, batch_id: str, chunks: Any) -> None:
        self.sent.extend((batch_id, index) for index in chunks)


class FailingServing(OpenAIServing):
    """Dies (not a request's error: the worker itself) on its `fail_at`th submission."""

    def __init__(self, inner: OpenAIServing, fail_at: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.calls, self.fail_at = 0, fail_at

    def submit_completion(self, *args: Any, **kwargs: Any) -> Prepared:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the worker died")
        return super().submit_completion(*args, **kwargs)


@pytest.fixture(scope="module")
def serving(store_dir: Path) -> Iterator[OpenAIServing]:
    settings = Settings(model_store=str(store_dir))
    service = GenerationService(settings, open_store(settings.model_store, settings))
    yield OpenAIServing(service)
    service.close(5)


class Batches:
    def __init__(self, root: Path, serving: OpenAIServing) -> None:
        blobs = LocalBlobs(root)
        self.clock, self.chunks = Clock(), Chunks()
        self.files, self.records = FileStore(blobs), BatchRecords(blobs)
        settings = Settings(batch_chunk_lines=CHUNK, batch_overdue_grace_s=GRACE)
        self.blobs, self.serving = blobs, serving
        settle = self.runner().settle_overdue
        self.service = BatchService(
            self.files,
            self.records,
            blobs,
            self.chunks,
            serving.check,
            settle,
            settings,
            self.clock,
        )

    def runner(self, serving: OpenAIServing | None = None) -> BatchRunner:
        return BatchRunner(
            self.files, self.records, self.blobs, serving or self.serving, 4, self.clock
        )

    def create(self, window: str = "24h") -> str:
        lines = [completion_line(f"r{i}", "gpt2-test", f"Line {i}") for i in range(LINES)]
        source = self.files.create(OWNER, "in.jsonl", "batch", jsonl(lines))
        body = CreateBatch(
            input_file_id=source.id, endpoint="/v1/completions", completion_window=window
        )
        return self.service.create(OWNER, body).id

    def record(self, batch_id: str) -> BatchRecord:
        found = self.records.get(batch_id)
        assert found is not None
        return found

    def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        return [json.loads(line) for line in self.files.content(OWNER, file_id).splitlines()]

    def custom_ids(self, record: BatchRecord) -> list[str]:
        found = [*self.lines(record.output_file_id), *self.lines(record.error_file_id)]
        return sorted(line["custom_id"] for line in found)


EVERY_ID = sorted(f"r{i}" for i in range(LINES))


@pytest.fixture
def batches(tmp_path: Path, serving: OpenAIServing) -> Batches:
    return Batches(tmp_path, serving)


def test_a_chunk_delivered_twice_counts_once(batches: Batches) -> None:
    batch_id = batches.create()
    runner = batches.runner()

    async def deliver() -> None:
        for batch, index in [*batches.chunks.sent, batches.chunks.sent[0]]:
            await runner.run_chunk(batch, index)
        await runner.run_chunk(*batches.chunks.sent[-1])  # after it finalized too

    asyncio.run(deliver())
    record = batches.record(batch_id)

    assert record.status == "completed"
    assert record.request_counts.model_dump() == {"total": 6, "completed": 6, "failed": 0}
    assert batches.custom_ids(record) == EVERY_ID


def test_a_worker_that_dies_mid_chunk_leaves_it_undone_and_its_rerun_completes_it(
    batches: Batches,
) -> None:
    batch_id = batches.create()
    dying = batches.runner(FailingServing(batches.serving, fail_at=2))  # the 1st chunk's 2nd line

    with pytest.raises(RuntimeError, match="died"):
        asyncio.run(dying.run_chunk(*batches.chunks.sent[0]))
    after_death = batches.record(batch_id)

    async def redeliver() -> None:
        for batch, index in batches.chunks.sent:
            await batches.runner().run_chunk(batch, index)

    asyncio.run(redeliver())
    record = batches.record(batch_id)

    assert after_death.chunks_done == [] and after_death.request_counts.completed == 0
    assert record.status == "completed" and record.request_counts.completed == LINES
    assert batches.custom_ids(record) == EVERY_ID


def test_chunks_taken_after_the_window_ends_expire_and_what_is_done_is_kept(
    batches: Batches,
) -> None:
    batch_id = batches.create(window="1h")
    runner = batches.runner()
    first, *rest = batches.chunks.sent

    asyncio.run(runner.run_chunk(*first))
    batches.clock.now += 3600  # the window ends
    for chunk in rest:
        asyncio.run(runner.run_chunk(*chunk))
    record = batches.record(batch_id)
    done, expired = batches.lines(record.output_file_id), batches.lines(record.error_file_id)

    assert record.status == "expired" and record.expired_at is not None
    assert [line["custom_id"] for line in done] == ["r0", "r1"]
    assert all(line["error"]["code"] == "batch_expired" for line in expired)
    assert record.request_counts.model_dump() == {"total": 6, "completed": 2, "failed": 4}
    assert batches.custom_ids(record) == EVERY_ID


def test_a_batch_no_worker_finishes_is_settled_as_expired_when_read_after_its_window(
    batches: Batches,
) -> None:
    batch_id = batches.create(window="1h")
    runner = batches.runner()
    first, second, _ = batches.chunks.sent
    asyncio.run(runner.run_chunk(*first))  # the others never come (a dead-letter queue)

    batches.clock.now += 3600 + GRACE - 1
    before_grace = batches.service.retrieve(OWNER, batch_id)
    batches.clock.now += 1
    settled = batches.service.retrieve(OWNER, batch_id)
    asyncio.run(runner.run_chunk(*second))  # a late worker: nothing more is counted
    record = batches.record(batch_id)
    expired = batches.lines(record.error_file_id)

    assert before_grace.status == "in_progress"
    assert settled.status == "expired" and settled.expired_at is not None
    assert record.request_counts.model_dump() == {"total": 6, "completed": 2, "failed": 4}
    assert [line["custom_id"] for line in batches.lines(record.output_file_id)] == ["r0", "r1"]
    assert all(line["error"]["code"] == "batch_expired" for line in expired)
    assert batches.custom_ids(record) == EVERY_ID


def test_a_chunk_run_twice_at_once_counts_one_run_whole(batches: Batches) -> None:
    """Two workers holding the same chunk: each writes its own lines; the batch's files take the
    run that was counted, never a mix."""
    batch_id = batches.create()

    async def deliver() -> None:
        first, *rest = batches.chunks.sent
        await asyncio.gather(batches.runner().run_chunk(*first), batches.runner().run_chunk(*first))
        for chunk in rest:
            await batches.runner().run_chunk(*chunk)

    asyncio.run(deliver())
    record = batches.record(batch_id)
    answers = batches.lines(record.output_file_id)

    assert record.status == "completed"
    assert [line["custom_id"] for line in answers] == [f"r{i}" for i in range(LINES)]
    assert record.request_counts.model_dump() == {"total": 6, "completed": 6, "failed": 0}
