"""Ids of files and batches: in the order they were made, and not to be guessed."""

from __future__ import annotations

import re
import secrets
import time

_ORDERED_ID = re.compile(r"^(?:file-|batch_)([0-9a-f]{12})[0-9a-f]{20}$")


def ordered_hex() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits (20). Lists sort by
    creation second, then id: within a second, ids made later come later (random ids listed
    files made in the same second in any order)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def made_in_second(object_id: str) -> int | None:
    """The second (Unix time) a file's or batch's id was made in; None for a string that is
    not such an id."""
    match = _ORDERED_ID.match(object_id)
    return int(match[1], 16) // 1000 if match else None
