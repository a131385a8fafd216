"""The Batch API's objects in OpenAI's shapes (what the official client parses), and the record
a batch is kept as: its public fields plus who owns it and which of its chunks are done."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
# Where a batch ends: nothing moves it on from here.
FINAL_STATUSES: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
UPLOAD_PURPOSE = "batch"  # the one purpose callers upload for
OUTPUT_PURPOSE = "batch_output"  # what a batch's output and error files are


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileRecord(FileObject):
    owner: str

    def public(self) -> FileObject:
        return FileObject.model_validate(self.model_dump(exclude={"owner"}))


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError] = Field(default_factory=list)


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None


class BatchRecord(Batch):
    """A batch as stored: the chunks its lines were cut into (`chunk_starts[i]` is chunk i's
    first request, counted from 0); for each chunk done, the run whose lines count (a chunk run
    twice wrote two sets of lines; the batch's files take one); the chunks that ran out of
    time unrun."""

    owner: str
    chunk_starts: list[int]
    counted_runs: dict[int, str] = Field(default_factory=dict)
    expired_chunks: list[int] = Field(default_factory=list)

    def public(self) -> Batch:
        return Batch.model_validate(self.model_dump(include=set(Batch.model_fields)))

    @property
    def chunks_done(self) -> list[int]:
        return sorted(self.counted_runs)

    @property
    def all_chunks_done(self) -> bool:
        return len(self.counted_runs) == len(self.chunk_starts)

    @property
    def taking_chunks(self) -> bool:
        """Whether a chunk's lines may still be counted (not once finalizing has begun)."""
        return self.status in ("in_progress", "cancelling")


class CreateBatch(BaseModel):
    # A typo or a value of the wrong type is an error, as on the other routes.
    model_config = ConfigDict(extra="forbid", strict=True)

    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: str
    completion_window: str = "24h"
    # OpenAI's limits: 16 pairs, keys of 64 characters at most, values of 512.
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(default=None, max_length=16)


class Page(BaseModel):
    """One page of a list, with OpenAI's cursor fields (`after` = the last id of a page)."""

    object: Literal["list"] = "list"
    data: list[Any]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
