"""notebooks/explore_game_stream.ipynb runs top to bottom, unattended, in a real
kernel: a local hub, a connection, a DataFrame, a plot and an accepted receipt."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_game_stream.ipynb"


def _text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_runs_and_gets_an_accepted_receipt(venv_kernel: str) -> None:
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # the file is kept without outputs so diffs stay readable
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(notebook, timeout=60, kernel_name=venv_kernel,
                                     startup_timeout=60,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    receipt_cells = [c for c in code_cells if "receipt" in c.metadata.get("tags", [])]
    assert len(receipt_cells) == 1
    assert "accepted" in _text(receipt_cells[0])
    assert "signature verifies: True" in _text(receipt_cells[0])
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the odds plot was not displayed"
