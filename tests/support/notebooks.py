"""Running the notebooks as papermill does for a reader, and checking the figures they promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill

from tests.support.servers import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(name: str, output: Path, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Execute a notebook as papermill does for a reader; raises on the first cell error."""
    executed = output / name
    papermill.execute_notebook(
        NOTEBOOKS / name,
        executed,
        parameters={**parameters, "output_dir": str(output)},
        cwd=NOTEBOOKS,
        kernel_name="python3",
        progress_bar=False,
    )
    return nbformat.read(executed, as_version=4)


def assert_figures(notebook: nbformat.NotebookNode, output: Path, names: list[str]) -> None:
    for name in names:
        data = (output / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name  # a real, drawn image
    displayed = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert len(displayed) == len(names)
