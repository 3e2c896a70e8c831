"""notebooks/backtest_agents.ipynb runs top to bottom, unattended, in a real kernel: it
writes a CSV, backtests two agents, and shows a comparison table and plots."""

from __future__ import annotations

from .kit.notebooks import run_notebook


def test_backtest_notebook_compares_two_agents(venv_kernel: str) -> None:
    code_cells = run_notebook("backtest_agents.ipynb", venv_kernel, timeout=120)
    (summary,) = [c for c in code_cells if "summary" in c.metadata.get("tags", [])]
    text = "".join(o.get("data", {}).get("text/plain", "") for o in summary.outputs)
    assert "favorite" in text
    assert "value" in text
    assert "72 games" in "".join(o.get("text", "") for o in code_cells[0].outputs)
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the comparison plots were not displayed"
