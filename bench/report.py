"""What a benchmark does with its figures: JSON on stdout, and in the --output file when given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(figures: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(figures, indent=2) + "\n"
    if output:
        output.write_text(text)
    print(text)
