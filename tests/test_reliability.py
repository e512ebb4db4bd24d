"""Reliability diagrams of open-set decisions (reid/reliability.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reid.errors import ReidError
from reid.metrics import reliability_table
from reid.reliability import bin_bands, check_plot_path, perfect_band, plot_reliability

RED = np.array([0xC0, 0x39, 0x2B])


def red_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(rgb - RED).sum(axis=2) < 40).sum())


def test_perfect_band_is_the_spread_of_a_calibrated_bins_rate():
    assert perfect_band(1, 0.5) == (0.0, 1.0)  # one decision: right or wrong
    lo, hi = perfect_band(1000, 0.8)
    assert 0.77 < lo < 0.8 < hi < 0.83  # +-1.645 sd of 0.0126
    assert perfect_band(50, 1.0) == (1.0, 1.0)
    assert perfect_band(40, 0.7, seed=3) == perfect_band(40, 0.7, seed=3)
    with pytest.raises(ValueError):
        perfect_band(0, 0.5)
    with pytest.raises(ValueError):
        perfect_band(5, 1.5)


def test_bins_outside_their_band_are_told_apart_from_chance():
    table = [
        {"lo": 0.8, "hi": 0.9, "n": 100, "confidence": 0.85, "rate": 0.5},  # far off
        {"lo": 0.9, "hi": 1.0, "n": 3, "confidence": 0.95, "rate": 0.6667},  # 2 of 3: chance
        {"lo": 0.5, "hi": 0.6, "n": 0, "confidence": 0.55, "rate": 0.0},  # empty: skipped
    ]
    bands = bin_bands(table)
    assert [b[2] for b in bands] == [True, False]
    assert bands[0][0] < 0.85 < bands[0][1]


def test_the_diagram_marks_miscalibration_and_only_that(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 400)
    honest = rng.uniform(0, 1, 400) < p
    boastful = rng.uniform(0, 1, 400) < p - 0.3
    good = plot_reliability(reliability_table(p, honest), tmp_path / "good.png",
                            ece=0.03, floor=0.04, p_value=0.6, title="honest")  # fmt: skip
    bad = plot_reliability(reliability_table(p, boastful), tmp_path / "bad.png")
    for path in (good, bad):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 300
    assert not any(b[2] for b in bin_bands(reliability_table(p, honest)))
    assert red_pixels(good) == 0
    assert red_pixels(bad) > 50  # the bins well below the diagonal, drawn red


def test_nothing_to_draw_and_bad_paths_are_refused(tmp_path):
    with pytest.raises(ReidError, match="no decisions"):
        plot_reliability([], tmp_path / "x.png")
    assert check_plot_path(tmp_path / "r.png") == tmp_path / "r.png"
    with pytest.raises(ReidError, match="PNG"):
        check_plot_path(tmp_path / "r.jpg")
    with pytest.raises(ReidError, match="no such folder"):
        check_plot_path(tmp_path / "missing" / "r.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ReidError, match="is a folder"):
        check_plot_path(tmp_path / "d.png")
