"""Writing PNGs (maps, training curves) leaves matplotlib's backend alone, so a notebook's
inline plots keep working after a map or a training run."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib_inline")  # ipykernel's, a dev dependency

# A fresh interpreter, as in a notebook kernel: the inline backend is set and a pyplot
# figure is open before our modules are imported and before they draw anything.
SCRIPT = """
import json, sys
from datetime import datetime
from pathlib import Path

import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt

plt.figure()
backend = matplotlib.get_backend()
seen = {"before": backend}

import reid.cli, reid.maps, training.curves  # noqa: E401
seen["after_import"] = matplotlib.get_backend()

from reid.movements import MovementView
from reid.registry import SightingView

out = Path(sys.argv[1])
t = datetime(2025, 1, 1)
view = SightingView("s1", "T-1", "tiger", "left", "confirmed", t, "NP", "bardia", None,
                    28.4, 81.3, "m1", "a.jpg", None)
move = MovementView("T-1", "tiger", "NP", "bardia", t, 28.4, 81.3,
                    "IN", "katarniaghat", t, 28.25, 81.15, 22.0, 2.0)
reid.maps.draw_map(out / "map.png", [view], [move], "test")
rows = [{"epoch": 1, "loss": 2.0, "arcface": 1.5, "triplet": 0.5, "top1": 0.4, "mAP": 0.3},
        {"epoch": 2, "loss": 1.0, "arcface": 0.8, "triplet": 0.2, "top1": 0.6, "mAP": 0.5}]
training.curves.plot_curves(rows, out / "curves.png")
seen["after_drawing"] = matplotlib.get_backend()
seen["open_figures"] = plt.get_fignums()
print(json.dumps(seen))
"""


def test_drawing_files_keeps_the_notebook_backend(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    inline = "module://matplotlib_inline.backend_inline"
    assert seen["before"] == inline
    assert seen["after_import"] == inline
    assert seen["after_drawing"] == inline  # matplotlib.use("Agg") would have switched it
    assert seen["open_figures"] == [1]  # ... and closed the notebook's figures
    for name in ("map.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
