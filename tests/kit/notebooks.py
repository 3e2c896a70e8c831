"""Running a notebook of the project the way a user would, top to bottom, in a kernel
of this interpreter (the ``venv_kernel`` fixture), and failing on any error output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(name: str, kernel_name: str, *, timeout: int) -> list[Any]:
    """Execute ``notebooks/<name>``; returns its code cells with their outputs. The file
    must be kept without outputs (diffs stay readable)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name=kernel_name,
                                     startup_timeout=60,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    return code_cells
