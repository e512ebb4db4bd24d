"""Reliability diagrams of open-set decisions (reid/reliability.py) and the open-set
report that draws them (reid eval --open-set --reliability)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binom

from reid.cli import _report_open_set
from reid.errors import ReidError
from reid.metrics import reliability_table
from reid.reliability import bin_bands, check_plot_path, perfect_band, plot_reliability

RED = np.array([0xC0, 0x39, 0x2B])


def red_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(rgb - RED).sum(axis=2) < 40).sum())


def test_perfect_band_is_the_exact_binomial_band():
    assert perfect_band(1, 0.5) == (0.0, 1.0)  # one decision: right or wrong
    assert perfect_band(50, 1.0) == (1.0, 1.0)
    lo, hi = perfect_band(1000, 0.8, level=0.10)
    assert 0.77 < lo < 0.8 < hi < 0.83  # +-1.645 sd of 0.0126
    # the cases a 4,000-draw simulation got wrong: exact quantiles, shares k/n
    assert perfect_band(5, 0.656, level=0.10) == (0.2, 1.0)
    assert perfect_band(6, 0.154, level=0.10) == (0.0, 0.5)
    for n, c in ((13, 0.969), (73, 0.817), (7, 0.5)):
        lo, hi = perfect_band(n, c, level=0.02)
        assert (lo * n, hi * n) == tuple(binom.ppf([0.01, 0.99], n, c))
    with pytest.raises(ValueError):
        perfect_band(0, 0.5)
    with pytest.raises(ValueError):
        perfect_band(5, 1.5)
    with pytest.raises(ValueError):
        perfect_band(5, 0.5, level=0.0)


def test_bands_are_shared_among_the_bins():
    """Each of k bins gets its band at level / k (Bonferroni), so that a perfectly
    calibrated matcher shows any bin outside at most 10 % of the time."""
    table = [
        {"lo": 0.8, "hi": 0.9, "n": 100, "confidence": 0.85, "rate": 0.5},  # far off
        {"lo": 0.9, "hi": 1.0, "n": 13, "confidence": 0.969, "rate": 0.7692},  # 10 of 13
        {"lo": 0.5, "hi": 0.6, "n": 0, "confidence": 0.55, "rate": 0.0},  # empty: skipped
    ]
    bands = bin_bands(table)
    assert [b[2] for b in bands] == [True, True]
    assert bands[1][:2] == perfect_band(13, 0.969, level=0.05)
    # 10 of 13 at 0.969 (P(X <= 10) = 0.0067) is outside alone, not among 9 bins
    nine = [table[1]] + [{"lo": 0.5, "hi": 0.6, "n": 20, "confidence": 0.55, "rate": 0.55}] * 8
    assert bin_bands(nine)[0][2] is False
    assert bin_bands([table[1]])[0][2] is True
    # perfectly calibrated matchers, 300 times: few show any bin outside
    rng = np.random.default_rng(0)
    flagged = 0
    for _ in range(300):
        p = rng.uniform(0.5, 1.0, 132)
        flagged += any(b[2] for b in bin_bands(reliability_table(p, rng.uniform(0, 1, 132) < p)))
    assert flagged / 300 <= 0.12


def test_the_diagram_marks_miscalibration_and_only_that(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 400)
    honest = rng.uniform(0, 1, 400) < p
    boastful = rng.uniform(0, 1, 400) < p - 0.3
    good = plot_reliability(reliability_table(p, honest), tmp_path / "good.png",
                            ece=0.03, mean=0.04, p_value=0.6, title="honest")  # fmt: skip
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


def open_set_result(reliability: list[dict]) -> dict:
    return {"gallery": 10, "queries": 12, "n_known": 5, "n_unknown": 7, "BAKS": 0.6,
            "BAUS": 0.9, "gm": 0.7348, "ECE": 0.0912, "ECE_perfect": 0.071,
            "ECE_perfect_p95": 0.12, "ECE_p": 0.0004, "top1_known": 0.8, "seconds": 3.2,
            "reliability": reliability}  # fmt: skip


def test_the_open_set_report_keeps_its_figures_when_the_drawing_fails(tmp_path, capsys):
    table = [{"lo": 0.8, "hi": 0.8667, "n": 12, "confidence": 0.83, "rate": 0.75}]
    _report_open_set(open_set_result(table), as_json=False, diagram=tmp_path / "r.png")
    out = capsys.readouterr().out
    assert "ECE      0.091" in out and "95 % below 0.120; p < 0.001" in out
    assert f"reliability diagram: {tmp_path / 'r.png'}" in out
    assert Image.open(tmp_path / "r.png").format == "PNG"
    # the folder went away during the evaluation; and a result with nothing to draw
    for result, diagram in ((open_set_result(table), tmp_path / "gone" / "r.png"),
                            (open_set_result([]), tmp_path / "s.png")):  # fmt: skip
        for as_json in (False, True):
            with pytest.raises(ReidError, match="reliability diagram was not written"):
                _report_open_set(dict(result), as_json=as_json, diagram=diagram)
            out = capsys.readouterr().out
            if as_json:
                data = json.loads(out)
                assert data["gm"] == 0.7348 and "reliability_diagram" not in data
            else:
                assert "gm       0.735" in out and "reliability diagram:" not in out
