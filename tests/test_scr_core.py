"""SCR core: likelihood, fit, intervals, non-spatial M0, mask, simulator, transboundary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely

from reid.errors import ReidError
from reid.scr.data import CaptureHistory, Detectors, Mask, ScrDataError
from reid.scr.fit import activity_centres, fit_nonspatial, fit_scr, log_likelihood
from reid.scr.mask import make_mask
from reid.scr.simulate import border_grid, simulate_survey
from reid.scr.transboundary import fit_by_country

# ------------------------------------------------------------------ tiny hand-made case


def _tiny(detector_type: str) -> tuple[CaptureHistory, Mask]:
    det = Detectors(
        ids=("a", "b", "c"),
        xy=np.array([[0.0, 0.0], [2000.0, 0.0], [0.0, 3000.0]]),
        usage=np.array([[1, 2.5, 0, 1], [1, 1, 1, 0.5], [0, 3, 1, 1]], dtype=float),
        country=("RU", "RU", "CN"),
    )
    counts = np.zeros((4, 3, 4), dtype=int)
    counts[0, 0, 0] = 1
    counts[0, 1, 1] = 2 if detector_type == "count" else 1
    counts[1, 2, 3] = 1
    counts[2, 2, 3] = 1  # same history as individual 1: the multinomial term counts
    counts[3, 0, 1] = 3 if detector_type == "count" else 1
    counts[3, 1, 3] = 1
    ch = CaptureHistory(("i0", "i1", "i2", "i3"), det, counts, detector_type)
    gx, gy = np.meshgrid(np.arange(-3000, 5001, 2000.0), np.arange(-3000, 6001, 3000.0))
    mask = Mask(xy=np.column_stack([gx.ravel(), gy.ravel()]), cell_area_m2=2000.0 * 3000.0)
    return ch, mask


def _slow_loglik(ch, mask, d_per_100km2, sigma, g0=None, lam0=None) -> float:
    """The full likelihood with explicit loops over cells, detectors and occasions."""
    det = ch.detectors
    cell_km2 = mask.cell_area_m2 / 1e6
    d_km2 = d_per_100km2 / 100.0
    n = ch.n_individuals
    a = 0.0
    integral = [0.0] * n
    for m in range(mask.n_cells):
        p_none = 1.0
        pr = [1.0] * n
        for k in range(det.n_detectors):
            dist2 = float(((mask.xy[m] - det.xy[k]) ** 2).sum())
            for s in range(det.n_occasions):
                u = det.usage[k, s]
                if ch.detector_type == "proximity":
                    g = g0 * math.exp(-dist2 / (2 * sigma**2))
                    p = 1 - (1 - g) ** u
                    p_none *= 1 - p
                    for i in range(n):
                        y = 1 if ch.counts[i, k, s] > 0 else 0
                        pr[i] *= p if y else 1 - p
                else:
                    mu = u * lam0 * math.exp(-dist2 / (2 * sigma**2))
                    p_none *= math.exp(-mu)
                    for i in range(n):
                        y = int(ch.counts[i, k, s])
                        pr[i] *= math.exp(-mu) * mu**y / math.factorial(y)
        a += (1 - p_none) * cell_km2
        for i in range(n):
            integral[i] += pr[i] * cell_km2
    histories = {}
    for i in range(n):
        key = (ch.counts[i] > 0 if ch.detector_type == "proximity" else ch.counts[i]).tobytes()
        histories[key] = histories.get(key, 0) + 1
    log_mult = sum(math.lgamma(c + 1) for c in histories.values())
    return n * math.log(d_km2) - d_km2 * a + sum(math.log(v) for v in integral) - log_mult


@pytest.mark.parametrize("detector_type", ["proximity", "count"])
@pytest.mark.parametrize("sigma", [900.0, 2500.0])
def test_likelihood_matches_slow_loops(detector_type, sigma):
    ch, mask = _tiny(detector_type)
    params = {"g0": 0.3} if detector_type == "proximity" else {"lambda0": 0.4}
    fast = log_likelihood(ch, mask, 7.0, sigma, **params)
    slow = _slow_loglik(ch, mask, 7.0, sigma, params.get("g0"), params.get("lambda0"))
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-9)


def test_likelihood_is_maximised_near_the_fit():
    ch, mask = _tiny("proximity")
    est = fit_scr(ch, mask)
    best = log_likelihood(ch, mask, est.density_per_100km2, est.sigma_m, g0=est.g0)
    assert best == pytest.approx(est.log_likelihood, abs=1e-6)
    for factor in (0.8, 1.25):
        assert (
            log_likelihood(ch, mask, est.density_per_100km2 * factor, est.sigma_m, g0=est.g0) < best
        )
        assert (
            log_likelihood(ch, mask, est.density_per_100km2, est.sigma_m * factor, g0=est.g0) < best
        )


# ------------------------------------------------------------ recovery on large surveys


@pytest.fixture(scope="module")
def large_survey():
    det = border_grid(10, 10, 2000.0, 30, seed=1)
    sim = simulate_survey(det, density_per_100km2=40.0, sigma_m=2000.0, g0=0.05, seed=3)
    mask = make_mask(det, buffer_m=8000.0, spacing_m=1000.0)
    return sim, mask


@pytest.fixture(scope="module")
def large_fit(large_survey):
    sim, mask = large_survey
    return fit_scr(sim.history, mask)


def test_fit_recovers_known_parameters(large_survey, large_fit):
    sim, mask = large_survey
    est = large_fit
    assert est.converged
    assert sim.history.n_individuals > 100
    assert est.density_per_100km2 == pytest.approx(40.0, rel=0.2)
    assert est.sigma_m == pytest.approx(2000.0, rel=0.1)
    assert est.g0 == pytest.approx(0.05, rel=0.2)
    assert est.lambda0 is None and est.detector_type == "proximity"
    # standard errors and intervals: finite, ordered, containing the truth on this seed
    for value, se, (lo, hi), truth in [
        (est.density_per_100km2, est.density_se, est.density_ci, 40.0),
        (est.sigma_m, est.sigma_se, est.sigma_ci, 2000.0),
        (est.g0, est.g0_se, est.g0_ci, 0.05),
    ]:
        assert math.isfinite(se) and se > 0
        assert lo < value < hi
        assert lo < truth < hi
    assert est.abundance == pytest.approx(est.density_per_100km2 * mask.area_km2 / 100)
    assert est.n_detections == int(np.count_nonzero(sim.history.counts))
    json.dumps(est.to_dict())


def test_count_detectors_recover_lambda0():
    det = border_grid(8, 8, 2000.0, 20, seed=2)
    sim = simulate_survey(
        det, density_per_100km2=50.0, sigma_m=2000.0, lambda0=0.08, detector_type="count", seed=4
    )
    est = fit_scr(sim.history, make_mask(det, 8000.0, 1000.0))
    assert est.converged and est.g0 is None
    assert est.lambda0 == pytest.approx(0.08, rel=0.25)
    assert est.sigma_m == pytest.approx(2000.0, rel=0.12)
    assert est.density_ci[0] < 50.0 < est.density_ci[1]


def test_activity_centres_are_near_the_true_ones(large_survey, large_fit):
    sim, mask = large_survey
    est = large_fit
    centres = activity_centres(sim.history, mask, est)
    truth = sim.centres[sim.detected]
    err = np.sqrt(((centres - truth) ** 2).sum(axis=1))
    well_seen = sim.history.counts.sum(axis=(1, 2)) >= 5
    assert centres.shape == (sim.history.n_individuals, 2)
    assert np.median(err[well_seen]) < 0.6 * 2000.0
    # a shuffled assignment is much worse: the posterior follows each animal's detections
    assert np.median(err[well_seen]) < 0.5 * np.median(
        np.sqrt(((centres[::-1] - truth) ** 2).sum(axis=1))
    )


# -------------------------------------------------------------------- non-spatial M0


def test_m0_recovers_abundance():
    rng = np.random.default_rng(5)
    n_total, p, s = 200, 0.15, 10
    caught = rng.random((n_total, s)) < p
    caught = caught[caught.any(axis=1)]
    det = Detectors(ids=("only",), xy=np.zeros((1, 2)), usage=np.ones((1, s)))
    ch = CaptureHistory(
        tuple(f"x{i}" for i in range(caught.shape[0])), det, caught[:, None, :].astype(int)
    )
    est = fit_nonspatial(ch, area_km2=50.0)
    assert est.abundance == pytest.approx(n_total, rel=0.1)
    assert est.p == pytest.approx(p, rel=0.1)
    assert est.abundance_ci[0] >= ch.n_individuals
    assert est.abundance_ci[0] < n_total < est.abundance_ci[1]
    assert est.density_per_100km2 == pytest.approx(est.abundance * 2)


def test_m0_with_every_animal_seen_gives_a_finite_interval():
    """High detection: N-hat sits on its boundary (the animals seen); the interval comes
    from the profile likelihood instead of the singular log-scale Hessian."""
    rng = np.random.default_rng(7)
    n, s = 12, 10
    caught = rng.random((n, s)) < 0.8
    caught[:, 0] = True
    det = Detectors(ids=("only",), xy=np.zeros((1, 2)), usage=np.ones((1, s)))
    ch = CaptureHistory(tuple(f"x{i}" for i in range(n)), det, caught[:, None, :].astype(int))
    est = fit_nonspatial(ch, area_km2=50.0)
    assert est.abundance == pytest.approx(n, abs=0.05)
    lo, hi = est.abundance_ci
    assert np.isfinite([lo, hi, est.abundance_se]).all()
    assert n - 1e-9 <= lo <= est.abundance < hi < n + 5


# ------------------------------------------------------------------------- bad input


def _det(k=2, s=3) -> Detectors:
    return Detectors(
        ids=tuple(f"d{i}" for i in range(k)),
        xy=np.arange(2 * k, dtype=float).reshape(k, 2) * 1000,
        usage=np.ones((k, s)),
    )


def test_input_errors_are_clear():
    det = _det()
    mask = Mask(xy=np.zeros((4, 2)), cell_area_m2=1e6)
    with pytest.raises(ScrDataError, match="shape"):
        CaptureHistory(("a",), det, np.ones((1, 2, 2), int))
    with pytest.raises(ScrDataError, match="usage"):
        Detectors(("a", "b"), np.zeros((2, 2)), -np.ones((2, 3)))
    with pytest.raises(ScrDataError, match="unique"):
        Detectors(("a", "a"), np.zeros((2, 2)), np.ones((2, 3)))
    with pytest.raises(ScrDataError, match="detector_type"):
        CaptureHistory(("a",), det, np.ones((1, 2, 3), int), "hair-snare")
    with pytest.raises(ScrDataError, match="whole numbers"):
        CaptureHistory(("a",), det, np.full((1, 2, 3), 0.5))
    with pytest.raises(ScrDataError, match="no detections"):
        fit_scr(CaptureHistory((), det, np.zeros((0, 2, 3), int)), mask)
    counts = np.zeros((2, 2, 3), int)
    counts[0, 0, 0] = counts[0, 1, 1] = 1
    with pytest.raises(ScrDataError, match="individual.*no detections.*b"):
        fit_scr(CaptureHistory(("a", "b"), det, counts), mask)
    idle = Detectors(det.ids, det.xy, np.array([[1.0, 1, 1], [0, 0, 0]]))
    with pytest.raises(ScrDataError, match="usage is 0"):  # detected while not operating
        CaptureHistory(("a", "b"), idle, counts)
    with pytest.raises(ScrDataError, match="never operating.*d1"):
        fit_scr(CaptureHistory(("a",), idle, np.array([[[1, 1, 0], [0, 0, 0]]])), mask)
    with pytest.raises(ScrDataError, match="more than one detector"):
        fit_scr(CaptureHistory(("a",), det, np.array([[[1, 1, 0], [0, 0, 0]]])), mask)
    far = Mask(xy=np.full((4, 2), 1e8), cell_area_m2=1e6)  # degrees vs metres, say
    with pytest.raises(ScrDataError, match="mask cover the detectors"):
        fit_scr(CaptureHistory(("a",), det, np.array([[[1, 0, 0], [0, 1, 0]]])), far)
    with pytest.raises(ScrDataError, match="cell_area"):
        Mask(xy=np.zeros((3, 2)), cell_area_m2=0)
    assert issubclass(ScrDataError, ReidError)


# ------------------------------------------------------------------------------ mask


def test_mask_buffer_spacing_and_habitat_clipping():
    det = _det(k=3)
    full = make_mask(det, buffer_m=5000.0, spacing_m=500.0)
    d = np.sqrt(((full.xy[:, None] - det.xy[None]) ** 2).sum(axis=2)).min(axis=1)
    assert d.max() <= 5000.0
    assert full.cell_area_m2 == 250_000.0
    # the area approaches that of the buffered detectors
    hull = shapely.MultiPoint([tuple(p) for p in det.xy]).buffer(5000.0, quad_segs=64)
    assert full.area_km2 == pytest.approx(hull.area / 1e6, rel=0.03)
    habitat = shapely.box(-10_000, -10_000, 2500, 10_000)
    clipped = make_mask(det, buffer_m=5000.0, spacing_m=500.0, habitat=habitat)
    assert 0 < clipped.n_cells < full.n_cells
    assert clipped.xy[:, 0].max() < 2500.0
    assert clipped.n_cells == int((full.xy[:, 0] < 2500.0).sum())
    with pytest.raises(ScrDataError, match="no cells"):
        make_mask(det, 5000.0, 500.0, habitat=shapely.box(1e6, 1e6, 1e6 + 10, 1e6 + 10))
    with pytest.raises(ScrDataError, match="habitat"):
        make_mask(det, 5000.0, 500.0, habitat="forest")
    with pytest.raises(ScrDataError, match="spacing"):
        make_mask(det, 5000.0, 0.0)


def test_mask_countries_from_polygons_and_nearest_detector():
    det = border_grid(4, 2, 1000.0, 3)  # border at x = 1500
    by_detector = make_mask(det, 3000.0, 500.0)
    west = by_detector.xy[:, 0] < 1500.0
    assert all(c == "RU" for c, w in zip(by_detector.country, west, strict=True) if w)
    assert all(c == "CN" for c, w in zip(by_detector.country, west, strict=True) if not w)
    only_west = make_mask(
        det, 3000.0, 500.0, country_polygons={"RU": shapely.box(-1e5, -1e5, 0, 1e5)}
    )
    assert {c for c, x in zip(only_west.country, only_west.xy[:, 0], strict=True) if x > 0} == {
        None
    }


# ---------------------------------------------------------------- simulator, border


def test_simulator_is_seeded_and_matches_density():
    det = border_grid(5, 5, 2000.0, 10, p_inactive=0.1, seed=0)
    assert det.countries() == ("CN", "RU")
    assert np.any(det.usage == 0) and np.all(det.usage.sum(axis=1) > 0)
    a = simulate_survey(det, 30.0, 1500.0, g0=0.1, seed=11)
    b = simulate_survey(det, 30.0, 1500.0, g0=0.1, seed=11)
    assert np.array_equal(a.history.counts, b.history.counts)
    counts = [simulate_survey(det, 30.0, 1500.0, g0=0.1, seed=s).n_animals for s in range(30)]
    expected = 30.0 * a.region_area_km2 / 100.0
    assert np.mean(counts) == pytest.approx(expected, rel=0.1)
    # no detections where usage is 0 (the history would refuse them anyway)
    assert not np.any((a.history.counts > 0) & (det.usage == 0)[None])


def test_fit_by_country_counts_shared_animals_and_fits_each_side():
    det = border_grid(8, 6, 2000.0, 20, seed=3)
    sim = simulate_survey(det, density_per_100km2=40.0, sigma_m=2000.0, g0=0.05, seed=6)
    mask = make_mask(det, buffer_m=8000.0, spacing_m=1000.0)
    ch = sim.history
    tb = fit_by_country(ch, mask)
    ru, cn = ch.detected_in("RU"), ch.detected_in("CN")
    assert tb.n_shared == int((ru & cn).sum()) > 0
    assert tb.individuals_by_country == {"RU": int(ru.sum()), "CN": int(cn.sum())}
    assert set(tb.by_country) == {"RU", "CN"}
    assert tb.by_country["RU"].n_individuals == int(ru.sum())
    assert tb.by_country["RU"].mask_area_km2 < tb.joint.mask_area_km2
    assert tb.joint.n_individuals == ch.n_individuals
    json.dumps(tb.to_dict())
    unclipped = fit_by_country(ch, mask, clip_at_border=False)
    assert unclipped.by_country["CN"].mask_area_km2 == pytest.approx(mask.area_km2)
    assert unclipped.by_country["CN"].n_individuals == int(cn.sum())


def test_an_interval_beyond_a_float_is_inf_not_an_overflow():
    """A huge standard error on the log scale (a window with almost no data): the upper
    bound is inf (JSON null), never an OverflowError (a 500 from the API)."""
    from reid.scr.fit import _interval

    lo, hi = _interval(0.0, 1000.0, math.exp)
    assert lo == 0.0 and hi == math.inf
    assert _interval(0.0, 1.0, math.exp) == pytest.approx((math.exp(-1.96), math.exp(1.96)), 1e-3)
