"""Ids of files and batches: in the order they were made, and not to be guessed."""

from __future__ import annotations

import secrets
import time


def ordered_hex() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits (20). Lists sort by
    creation second, then id: within a second, ids made later come later (random ids listed
    files made in the same second in any order)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
