"""notebooks/explore_game_stream.ipynb runs top to bottom, unattended, in a real
kernel: a local hub, a connection, a DataFrame, a plot and an accepted receipt."""

from __future__ import annotations

from typing import Any

from .kit.notebooks import run_notebook


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_runs_and_gets_an_accepted_receipt(venv_kernel: str) -> None:
    code_cells = run_notebook("explore_game_stream.ipynb", venv_kernel, timeout=60)
    receipt_cells = [c for c in code_cells if "receipt" in c.metadata.get("tags", [])]
    assert len(receipt_cells) == 1
    assert "accepted" in _text(receipt_cells[0])
    assert "signature verifies: True" in _text(receipt_cells[0])
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the odds plot was not displayed"
