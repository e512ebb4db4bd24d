"""Reliability diagrams of the matcher's decision probabilities (``reid eval --open-set
--reliability FILE.png``).

A reliability diagram puts, for each probability bin, the share of decisions that were
right against the mean probability given: on the diagonal, the probabilities mean what
they say. On the hundred-odd queries of a real evaluation a bin of a perfectly
calibrated matcher still strays from the diagonal by chance, so each bin is drawn with
the band (5th to 95th percentile) its rate would fall in if the matcher were perfectly
calibrated: a point outside its band is miscalibration that sampling does not explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from reid.errors import ReidError

__all__ = ["bin_bands", "check_plot_path", "perfect_band", "plot_reliability"]


def perfect_band(
    n: int, confidence: float, quantiles: tuple[float, float] = (0.05, 0.95),
    draws: int = 4000, seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """The ``quantiles`` of the share of right decisions in a bin of ``n`` decisions
    whose mean probability is ``confidence``, for a perfectly calibrated matcher (each
    right with its probability; the bin's decisions taken as equally likely, which gives
    a band at least as wide as the exact one). Seeded simulation."""
    if n < 1:
        raise ValueError(f"a bin needs at least one decision, got {n}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be within [0, 1], got {confidence}")
    rate = np.random.default_rng(seed).binomial(n, confidence, draws) / n
    lo, hi = np.quantile(rate, quantiles)
    return float(lo), float(hi)


def bin_bands(table: Sequence[Mapping]) -> list[tuple[float, float, bool]]:
    """For each bin of a :func:`reid.metrics.reliability_table` that holds decisions:
    (low, high) of :func:`perfect_band` and whether its rate lies outside it."""
    out = []
    for k, b in enumerate(b for b in table if int(b["n"]) > 0):
        lo, hi = perfect_band(int(b["n"]), float(b["confidence"]), seed=k)
        out.append((lo, hi, not lo <= float(b["rate"]) <= hi))
    return out


def check_plot_path(path: str | Path) -> Path:
    """``path`` for a PNG to be written after a long run: refused now (a clear error
    before the run, not a lost result after it) unless it ends in .png and its folder
    exists."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ReidError(f"{p}: the reliability diagram is written as PNG; give a .png path")
    if not p.parent.is_dir():
        raise ReidError(f"{p.parent}: no such folder for the reliability diagram")
    if p.is_dir():
        raise ReidError(f"{p}: is a folder; give a .png file path")
    return p


def plot_reliability(
    table: Sequence[Mapping],
    path: str | Path,
    ece: float | None = None,
    floor: float | None = None,
    p_value: float | None = None,
    title: str | None = None,
) -> Path:
    """Draw the reliability diagram of a :func:`reid.metrics.reliability_table` (its bins
    with decisions) to the PNG ``path``: each bin's rate of right decisions against its
    mean probability, with the band a perfectly calibrated matcher's rate would fall in
    (:func:`perfect_band`) and the diagonal; below, how many decisions fell in each bin.
    ``ece``, ``floor`` and ``p_value`` (``reid eval --open-set``'s ``ECE``, ``ECE_floor``,
    ``ECE_p``) are written in the title when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bins = [b for b in table if int(b["n"]) > 0]
    if not bins:
        raise ReidError("no decisions to draw a reliability diagram of")
    path = Path(path)
    fig = Figure(figsize=(5.2, 6.0))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfectly calibrated")
    conf = [float(b["confidence"]) for b in bins]
    rate = [float(b["rate"]) for b in bins]
    bands = bin_bands(bins)
    for k, (b, (lo, hi, _)) in enumerate(zip(bins, bands, strict=True)):
        top.fill_between([float(b["lo"]), float(b["hi"])], lo, hi, color="#bcd4e6", lw=0,
                         label="5-95 % of a perfect matcher's rate" if k == 0 else None)
    top.plot(conf, rate, color="#333333", lw=1)
    for off, colour, label in ((False, "#333333", "share right (within band)"),
                               (True, "#c0392b", "share right (outside band)")):  # fmt: skip
        pick = [k for k, band in enumerate(bands) if band[2] is off]
        if pick:
            top.scatter([conf[k] for k in pick], [rate[k] for k in pick], color=colour,
                        zorder=3, label=label)  # fmt: skip
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("share of decisions right")
    top.legend(loc="lower right", fontsize=8, framealpha=0.9)
    top.grid(alpha=0.3)
    words = [title] if title else []
    if ece is not None:
        line = f"ECE {ece:.3f}"
        if floor is not None:
            line += f" (perfect calibration: {floor:.3f}"
            line += f", p = {p_value:.2f})" if p_value is not None else ")"
        words.append(line)
    if words:
        top.set_title("\n".join(words), fontsize=10)
    widths = [float(b["hi"]) - float(b["lo"]) for b in bins]
    bottom.bar([float(b["lo"]) for b in bins], [int(b["n"]) for b in bins], width=widths,
               align="edge", color="#777777", edgecolor="white")  # fmt: skip
    bottom.set_xlabel("probability the matcher gave its decision")
    bottom.set_ylabel("decisions")
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path
