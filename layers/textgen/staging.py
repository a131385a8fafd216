"""Write a folder (or a file) under a temporary name, then rename it into place: no reader sees
half of it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_PREFIX = ".staging-"


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside `target`; when the block succeeds it replaces `target`.

    On an error (or a kill) the staging folder is removed or left under a dot-name that nothing
    trusts, and an existing `target` stays as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{STAGING_PREFIX}{target.name}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a path beside `target` to write; when the block succeeds it replaces `target`
    (on an error it is removed, and an existing `target` stays as it was)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{STAGING_PREFIX}{target.name}-{uuid.uuid4().hex}"
    try:
        yield staging
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def remove_stale_staging(folder: Path) -> None:
    """Remove what a crashed or killed writer left in `folder`."""
    for stale in Path(folder).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
