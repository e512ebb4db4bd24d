"""The training record: one CSV row per epoch (``log.csv``) and a PNG of the curves."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LOG_COLUMNS", "plot_curves", "write_log"]

LOG_COLUMNS: tuple[str, ...] = (
    "epoch",
    "step",
    "lr",
    "backbone_lr",
    "loss",
    "arcface",
    "triplet",
    "images_per_s",
    "seconds",
    "top1",
    "top5",
    "mAP",
    "queries",
)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_log(rows: Sequence[dict], path: str | Path) -> Path:
    """(Re)write the whole CSV log from ``rows`` (the metrics history), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in LOG_COLUMNS])
    tmp.replace(path)
    return path


def plot_curves(rows: Sequence[dict], path: str | Path) -> Path:
    """Losses (left) and held-out top-1 / mAP (right) against the epoch, as a PNG.

    Drawn on its own Agg canvas, not through pyplot: the process's matplotlib backend
    (a notebook's inline plots, say) is left as it was.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_eval = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in rows]
    for key in ("loss", "arcface", "triplet"):
        ax_loss.plot(epochs, [r.get(key, math.nan) for r in rows], marker=".", label=key)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_loss.legend()
    evaluated = [r for r in rows if r.get("mAP") is not None and not math.isnan(r["mAP"])]
    for key, label in (("top1", "top-1"), ("mAP", "mAP")):
        ax_eval.plot(
            [r["epoch"] for r in evaluated], [r[key] for r in evaluated], marker="o", label=label
        )
    ax_eval.set(xlabel="epoch", ylabel="held-out individuals", title="evaluation", ylim=(0, 1.02))
    ax_eval.legend()
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path
