"""notebooks/backtest_agents.ipynb runs top to bottom, unattended, in a real kernel: it
writes a CSV, backtests two agents, and shows a comparison table and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "backtest_agents.ipynb"


def test_backtest_notebook_compares_two_agents(venv_kernel: str) -> None:
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name=venv_kernel,
                                     startup_timeout=60,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    (summary,) = [c for c in code_cells if "summary" in c.metadata.get("tags", [])]
    text = "".join(o.get("data", {}).get("text/plain", "") for o in summary.outputs)
    assert "favorite" in text
    assert "value" in text
    assert "72 games" in "".join(o.get("text", "") for o in code_cells[0].outputs)
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the comparison plots were not displayed"
