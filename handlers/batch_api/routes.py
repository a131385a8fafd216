"""/v1/files and /v1/batches in OpenAI's shapes, so the official client's `files` and `batches`
work unchanged. Each caller sees only what its API key made."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from handlers.batch_api.batches import BatchService
from handlers.batch_api.files import MAX_LIST_LIMIT, FileStore
from handlers.batch_api.objects import (
    UPLOAD_PURPOSE,
    Batch,
    CreateBatch,
    FileDeleted,
    FileObject,
    Page,
)
from handlers.batch_api.setup import BatchApi
from handlers.errors import BodyTooLarge
from handlers.keys import caller_identity
from handlers.openai_api.routes import ERRORS
from handlers.strict_json import StrictJSONRoute
from textgen.errors import InvalidRequest

router = APIRouter(
    prefix="/v1",
    tags=["OpenAI-compatible: batches"],
    strict_content_type=False,
    route_class=StrictJSONRoute,
    responses=ERRORS,
)


# A coroutine, as handlers.deps explains: no trip through the thread pool per request.
async def _owner(request: Request) -> str:
    return caller_identity(request.scope, bool(request.app.state.settings.api_key_list()))


async def _files(request: Request) -> FileStore:
    api: BatchApi = request.app.state.batch_api
    return api.files


async def _batches(request: Request) -> BatchService:
    api: BatchApi = request.app.state.batch_api
    return api.batches


OwnerDep = Annotated[str, Depends(_owner)]
FilesDep = Annotated[FileStore, Depends(_files)]
BatchesDep = Annotated[BatchService, Depends(_batches)]


@router.post("/files")
async def upload_file(
    request: Request,
    file: UploadFile,
    purpose: Annotated[str, Form()],
    owner: OwnerDep,
    files: FilesDep,
) -> FileObject:
    """Upload a batch file (JSONL; purpose `batch`) as multipart/form-data."""
    if purpose != UPLOAD_PURPOSE:
        raise InvalidRequest(f"purpose {purpose!r}: only {UPLOAD_PURPOSE!r}", field="purpose")
    limit = request.app.state.settings.max_batch_file_bytes
    if file.size is not None and file.size > limit:  # the body's limit allows for the framing
        raise BodyTooLarge(f"the file is {file.size} bytes, more than the limit of {limit}")
    data = await file.read()
    if not data:
        raise InvalidRequest("the file is empty", field="file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"a batch file is JSONL, UTF-8 text: {exc}", field="file") from None
    name = file.filename or "upload.jsonl"
    record = await run_in_threadpool(files.create, owner, name, purpose, data)
    return record.public()


# OpenAI's cursor: a page's last_id. The list goes on after it even if its object was deleted since.
AfterCursor = Annotated[
    str | None, Query(description="The last id of the page before (its `last_id`).")
]


@router.get("/files")
def list_files(
    owner: OwnerDep,
    files: FilesDep,
    purpose: str | None = None,
    after: AfterCursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = MAX_LIST_LIMIT,
    order: Literal["asc", "desc"] = "desc",
) -> Page:
    """The caller's files, newest first (`order=asc`: oldest first)."""
    return files.listing(owner, purpose, after, limit, newest_first=order == "desc")


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, owner: OwnerDep, files: FilesDep) -> FileObject:
    return files.get(owner, file_id).public()


@router.get("/files/{file_id}/content", response_class=Response)
def file_content(file_id: str, owner: OwnerDep, files: FilesDep) -> Response:
    """The file's bytes as uploaded or written: JSONL (UTF-8 text, so it passes API Gateway as
    text)."""
    return Response(files.content(owner, file_id), media_type="application/jsonl")


@router.delete("/files/{file_id}")
def delete_file(file_id: str, owner: OwnerDep, files: FilesDep) -> FileDeleted:
    return files.delete(owner, file_id)


@router.post("/batches")
def create_batch(body: CreateBatch, owner: OwnerDep, batches: BatchesDep) -> Batch:
    """Check the input file whole (a 400 names its first bad lines) and start the batch."""
    return batches.create(owner, body)


@router.get("/batches")
def list_batches(
    owner: OwnerDep,
    batches: BatchesDep,
    after: AfterCursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page:
    """The caller's batches, newest first."""
    return batches.listing(owner, after, limit)


@router.get("/batches/{batch_id}")
def retrieve_batch(batch_id: str, owner: OwnerDep, batches: BatchesDep) -> Batch:
    return batches.retrieve(owner, batch_id)


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(batch_id: str, owner: OwnerDep, batches: BatchesDep) -> Batch:
    """Stop taking the batch's chunks; it finalizes as `cancelled` with what is done."""
    return batches.cancel(owner, batch_id)
