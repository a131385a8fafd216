"""Batch records, each one key of the blobs, changed by compare-and-swap: a change is applied
to the record as read and written only if nobody wrote it meanwhile (else read again and
retried), so workers finishing chunks of one batch at once all count."""

from __future__ import annotations

import re
from collections.abc import Callable

from handlers.batch_api.blobs import Blobs
from handlers.batch_api.ids import ordered_hex
from handlers.batch_api.objects import BatchRecord
from handlers.errors import ObjectNotFound

_BATCH_ID = re.compile(r"^batch_[0-9a-f]{32}$")
_PREFIX = "batches"


class BatchRecords:
    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs

    def create(self, record: BatchRecord) -> None:
        if not self._blobs.put_if(_key(record.id), record.model_dump_json().encode(), None):
            raise RuntimeError(f"batch {record.id} exists already")

    def get(self, batch_id: str) -> BatchRecord | None:
        if not _BATCH_ID.match(batch_id):
            return None
        found = self._blobs.read(_key(batch_id))
        return BatchRecord.model_validate_json(found[0]) if found else None

    def owned(self, owner: str, batch_id: str) -> BatchRecord:
        """The batch, if `owner` made it (another's is not found: its id tells nothing)."""
        record = self.get(batch_id)
        if record is None or record.owner != owner:
            raise ObjectNotFound(f"no batch {batch_id!r}", field="batch_id")
        return record

    def all(self) -> list[BatchRecord]:
        keys = [k for k in self._blobs.keys(_PREFIX) if k.count("/") == 1 and k.endswith(".json")]
        return [BatchRecord.model_validate_json(self._blobs.get(key)) for key in keys]

    def update(self, batch_id: str, change: Callable[[BatchRecord], bool]) -> BatchRecord:
        """Apply `change` (which edits the record it is given, and says whether it did) until it
        lands on the latest version; the record as it then is."""
        while True:
            found = self._blobs.read(_key(batch_id))
            if found is None:
                raise ObjectNotFound(f"no batch {batch_id!r}", field="batch_id")
            record = BatchRecord.model_validate_json(found[0])
            if not change(record):
                return record
            if self._blobs.put_if(_key(batch_id), record.model_dump_json().encode(), found[1]):
                return record


def new_batch_id() -> str:
    return f"batch_{ordered_hex()}"


def batch_blob(batch_id: str, name: str) -> str:
    """A key of the batch's own: its input, its chunks' outputs."""
    return f"{_PREFIX}/{batch_id}/{name}"


def _key(batch_id: str) -> str:
    return f"{_PREFIX}/{batch_id}.json"
