"""The notebooks run top to bottom (nbclient, a fresh Python kernel, a bounded
time each) with a tiny model release made on the fly as the model (the cell tagged
``parameters`` gets an injected ``MODEL``, as ``notebooks/execute.py --model`` does), and
the committed copies carry their outputs, plots included."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "notebooks"))
from execute import INJECTED, NOTEBOOKS, execute  # noqa: E402

TIMEOUT_S = 600


def _plots(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells (injected parameters aside) whose outputs hold an image."""
    code = [c for c in nb.cells
            if c.cell_type == "code" and INJECTED not in c.metadata.get("tags", [])]  # fmt: skip
    return [i for i, c in enumerate(code)
            if any("image/png" in o.get("data", {}) for o in c.outputs)]  # fmt: skip


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_shows_its_outputs(name):
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert all(c.get("execution_count") for c in code), f"{name} was not run top to bottom"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert _plots(nb), f"{name} shows no plot"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, tiny_release):
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("REID_DATABASE_URL", raising=False)
    nb = execute(REPO / "notebooks" / name, str(tiny_release), timeout_s=TIMEOUT_S)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]  # fmt: skip
    assert not errors
    assert _plots(nb) == _plots(nbformat.read(REPO / "notebooks" / name, as_version=4))
    assert (tmp_path / "home" / "notebooks").is_dir()  # worked in the data home, not the repo
