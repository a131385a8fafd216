"""The options the benchmarks that prepare models share: where the pinned public downloads are
kept (--cache), where the prepared models are kept for reruns (--work), where the figures go
(--output)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

PUBLIC_CACHE = Path(tempfile.gettempdir()) / "textgen-public"


def add_storage_options(parser: argparse.ArgumentParser, work_required: bool = False) -> None:
    parser.add_argument("--cache", type=Path, default=PUBLIC_CACHE)
    work_help = "the prepared models' folder" if work_required else "keep the prepared models here"
    parser.add_argument("--work", type=Path, required=work_required, help=work_help)
    parser.add_argument("--output", type=Path)
