"""Prints the project's runtime dependencies from pyproject.toml, one per line, torch excepted.

The images install torch first from the PyTorch index of their target (CPU or CUDA), in a layer
of its own, then these; so a code change rebuilds neither.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject_path: str) -> list[str]:
    with open(pyproject_path, "rb") as handle:
        dependencies: list[str] = tomllib.load(handle)["project"]["dependencies"]
    return [d for d in dependencies if re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0] != "torch"]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1])))
