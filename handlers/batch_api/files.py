"""/v1/files: uploaded batch files and batches' output files, each with its owner. Another
owner's file is not found (its id tells a caller nothing), and ids are random enough that none
can be guessed."""

from __future__ import annotations

import re
import time

from handlers.batch_api.blobs import Blobs
from handlers.batch_api.ids import ordered_hex
from handlers.batch_api.objects import FileDeleted, FileRecord, Page
from handlers.batch_api.pages import page
from handlers.errors import ObjectNotFound

_FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
MAX_LIST_LIMIT = 10_000  # as OpenAI's files list


class FileStore:
    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs

    def create(
        self, owner: str, filename: str, purpose: str, data: bytes, file_id: str | None = None
    ) -> FileRecord:
        """Keep `data` as a new file (or as `file_id`, written again whole: a batch's output
        finalized twice is one file)."""
        record = FileRecord(
            id=file_id or new_file_id(),
            bytes=len(data),
            created_at=int(time.time()),
            filename=filename,
            purpose=purpose,
            owner=owner,
        )
        self._blobs.put(_content_key(record.id), data)
        self._blobs.put(_record_key(record.id), record.model_dump_json().encode())
        return record

    def get(self, owner: str, file_id: str) -> FileRecord:
        if _FILE_ID.match(file_id):
            try:
                raw = self._blobs.get(_record_key(file_id))
            except KeyError:
                pass
            else:
                record = FileRecord.model_validate_json(raw)
                if record.owner == owner:
                    return record
        raise ObjectNotFound(f"no file {file_id!r}", field="file_id")

    def content(self, owner: str, file_id: str) -> bytes:
        record = self.get(owner, file_id)
        return self._blobs.get(_content_key(record.id))

    def delete(self, owner: str, file_id: str) -> FileDeleted:
        record = self.get(owner, file_id)
        self._blobs.delete(_record_key(record.id))
        self._blobs.delete(_content_key(record.id))
        return FileDeleted(id=record.id)

    def listing(
        self, owner: str, purpose: str | None, after: str | None, limit: int, newest_first: bool
    ) -> Page:
        records = []
        for key in self._blobs.keys("files"):
            if key.endswith(".json"):
                record = FileRecord.model_validate_json(self._blobs.get(key))
                if record.owner == owner and purpose in (None, record.purpose):
                    records.append(record)
        records.sort(key=lambda r: (r.created_at, r.id), reverse=newest_first)
        return page([r.public() for r in records], after, limit, newest_first)


def new_file_id() -> str:
    return f"file-{ordered_hex()}"


def _record_key(file_id: str) -> str:
    return f"files/{file_id}.json"


def _content_key(file_id: str) -> str:
    return f"files/{file_id}.data"
