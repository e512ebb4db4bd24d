"""Execute the notebooks top to bottom and write their outputs into them.

    python notebooks/execute.py                         # all four, the shipped default model
    python notebooks/execute.py season.ipynb            # one
    python notebooks/execute.py --model runs/my-release # another model release

Each notebook has a cell tagged ``parameters`` (``MODEL = None``: the shipped default
model). ``--model`` adds a cell tagged ``injected-parameters`` after it that sets
``MODEL``, kept in the written notebook so that its outputs say which model made them;
a run without ``--model`` removes such a cell. Data goes to the data home
(``$REID_HOME/notebooks/<name>``). ``tests/docs/test_notebooks.py`` runs the same code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("quickstart.ipynb", "retraining.ipynb", "season.ipynb", "population.ipynb")
INJECTED = "injected-parameters"


def with_parameters(nb: nbformat.NotebookNode, model: str | None) -> nbformat.NotebookNode:
    """``nb`` without an injected-parameters cell, plus one setting ``MODEL`` when given."""
    def tags(cell: nbformat.NotebookNode) -> list[str]:
        return cell.get("metadata", {}).get("tags", [])

    cells = [c for c in nb.cells if INJECTED not in tags(c)]
    if model is not None:
        at = next((i for i, c in enumerate(cells) if "parameters" in tags(c)), None)
        if at is None:
            raise SystemExit("the notebook has no cell tagged 'parameters'")
        cell = nbformat.v4.new_code_cell(
            f"# Injected by notebooks/execute.py --model\nMODEL = {model!r}",
            metadata={"tags": [INJECTED]},
        )
        cells.insert(at + 1, cell)
    nb.cells = cells
    return nb


def execute(path: Path, model: str | None, timeout_s: int = 600) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` (working directory: its folder) and return it."""
    nb = with_parameters(nbformat.read(path, as_version=4), model)
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="Notebook file names (default: all).")
    parser.add_argument("--model", help="Model release folder (default: the shipped model).")
    args = parser.parse_args(argv)
    model = None if args.model is None else str(Path(args.model).resolve())
    for name in args.notebooks or NOTEBOOKS:
        path = HERE / Path(name).name
        started = time.perf_counter()
        nb = execute(path, model)
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
