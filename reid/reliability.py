"""Reliability diagrams of the matcher's decision probabilities (``reid eval --open-set
--reliability FILE.png``).

A reliability diagram puts, for each probability bin, the share of decisions that were
right against the mean probability given: on the diagonal, the probabilities mean what
they say. On the hundred-odd queries of a real evaluation a bin of a perfectly
calibrated matcher still strays from the diagonal by chance, so each bin is drawn with
the band its share of right decisions would fall in if the matcher were perfectly
calibrated. The bands are widened for the number of bins (Bonferroni): a perfectly
calibrated matcher puts *any* bin outside its band at most 10 % of the time, so a bin
drawn outside (red) is miscalibration that chance hardly explains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from reid.errors import ReidError

__all__ = ["FAMILY_LEVEL", "bin_bands", "check_plot_path", "perfect_band", "plot_reliability"]

FAMILY_LEVEL = 0.10  # chance that a perfectly calibrated matcher shows any bin outside


def perfect_band(n: int, confidence: float, level: float = FAMILY_LEVEL) -> tuple[float, float]:
    """The shares of right decisions between which a bin of ``n`` decisions with mean
    probability ``confidence`` falls with probability about ``1 - level`` for a perfectly
    calibrated matcher: the ``level / 2`` and ``1 - level / 2`` quantiles of
    Binomial(n, confidence) / n (exact).

    Taking the bin's decisions as equally likely (the binomial) gives a band at least as
    wide as that of their own probabilities (a sum of unequal Bernoullis has the smaller
    variance and, at a decision or more from the mean, thinner tails: Hoeffding 1956),
    except for rare cases within one decision of the mean."""
    from scipy.stats import binom

    if n < 1:
        raise ValueError(f"a bin needs at least one decision, got {n}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be within [0, 1], got {confidence}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    lo, hi = binom.ppf([level / 2, 1 - level / 2], n, confidence)
    return float(lo) / n, float(hi) / n


def bin_bands(
    table: Sequence[Mapping], level: float = FAMILY_LEVEL
) -> list[tuple[float, float, bool]]:
    """For each bin of a :func:`reid.metrics.reliability_table` that holds decisions:
    (low, high) of its :func:`perfect_band` at ``level`` shared among the bins
    (Bonferroni: each bin's band at ``level / bins``) and whether its share of right
    decisions lies outside it."""
    bins = [b for b in table if int(b["n"]) > 0]
    out = []
    for b in bins:
        lo, hi = perfect_band(int(b["n"]), float(b["confidence"]), level / len(bins))
        # the table rounds shares to 4 decimals: compare in whole decisions
        right = round(float(b["rate"]) * int(b["n"]))
        out.append((lo, hi, not lo * int(b["n"]) <= right <= hi * int(b["n"])))
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
    mean: float | None = None,
    p_value: float | None = None,
    title: str | None = None,
) -> Path:
    """Draw the reliability diagram of a :func:`reid.metrics.reliability_table` (its bins
    with decisions) to the PNG ``path``: each bin's share of right decisions against its
    mean probability, with the band a perfectly calibrated matcher's share would fall in
    (:func:`bin_bands`; outside it: red) and the diagonal; below, how many decisions
    fell in each bin. ``ece``, ``mean`` and ``p_value`` (``reid eval --open-set``'s
    ``ECE``, ``ECE_perfect``, ``ECE_p``) are written in the title when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from reid.metrics import format_p

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
                         label=f"where a perfect matcher's share falls ({1 - FAMILY_LEVEL:.0%} "
                         "for all bins)" if k == 0 else None)  # fmt: skip
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
        if mean is not None:
            line += f" (a perfectly calibrated matcher: {mean:.3f} on average"
            line += f", {format_p(p_value)})" if p_value is not None else ")"
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
