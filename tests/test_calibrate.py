"""Calibration: logistic, multinomial and isotonic calibrators on toy sets with known answers."""

import numpy as np
import pytest

from reid.calibrate import (
    IsotonicCalibrator,
    LogisticCalibrator,
    MultinomialCalibrator,
    calibrator_from_dict,
)
from reid.errors import ReidError
from reid.metrics import expected_calibration_error


def toy(n=4000, seed=0):
    """Outcomes drawn from a known logistic model: P = sigmoid(3x - 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(3 * x - 1)))
    return x, (rng.random(n) < p).astype(int), p


def test_logistic_recovers_the_generating_model_and_is_calibrated():
    x, y, _ = toy()
    model = LogisticCalibrator().fit(x, y)
    assert model.weights[0] == pytest.approx(3.0, abs=0.3)
    assert model.bias == pytest.approx(-1.0, abs=0.2)
    xt, yt, pt = toy(seed=1)
    pred = model.predict(xt)
    assert np.max(np.abs(pred - pt)) < 0.06
    assert expected_calibration_error(pred, yt) < 0.03


def test_raw_scores_are_not_calibrated_but_the_fit_is():
    x, y, _ = toy()
    raw = 1 / (1 + np.exp(-x))  # right order, wrong probabilities
    assert expected_calibration_error(raw, y) > 0.1
    fitted = IsotonicCalibrator().fit(raw, y)
    xt, yt, _ = toy(seed=1)
    assert expected_calibration_error(fitted.predict(1 / (1 + np.exp(-xt))), yt) < 0.04


def test_monotone_fit_drops_a_feature_that_would_lower_the_probability():
    rng = np.random.default_rng(2)
    good = rng.normal(size=3000)
    bad = rng.normal(size=3000)
    y = rng.random(3000) < 1 / (1 + np.exp(-(2 * good - 1.5 * bad)))
    free = LogisticCalibrator(monotone=False).fit(np.column_stack([good, bad]), y)
    assert free.weights[1] < -1
    monotone = LogisticCalibrator().fit(np.column_stack([good, bad]), y)
    assert monotone.weights[1] == 0.0 and monotone.weights[0] > 1


def test_one_class_gives_its_smoothed_frequency():
    model = LogisticCalibrator().fit(np.arange(9.0), np.zeros(9))
    assert model.predict([[100.0]])[0] == pytest.approx(0.05)


def test_isotonic_pools_adjacent_violators_by_hand():
    # outcomes 0,1,0,1,1 at scores 1..5: the violation (1, 0) at 2-3 pools to 0.5
    model = IsotonicCalibrator().fit([1, 2, 3, 4, 5], [0, 1, 0, 1, 1])
    assert model.y == pytest.approx([0.0, 0.5, 1.0])
    assert model.x == pytest.approx([1.0, 2.5, 4.5])
    p = model.predict([0, 2.5, 3.5, 10])
    assert p[1] == pytest.approx(0.5) and p[2] == pytest.approx(0.75)
    assert 0 < p[0] < 0.01 and 0.99 < p[3] < 1  # never exactly 0 or 1
    assert np.all(np.diff(model.predict(np.linspace(0, 6, 50))) >= 0)


def test_round_trip_and_refusals():
    x, y, _ = toy(500)
    for model in (LogisticCalibrator(names=("s",)).fit(x, y), IsotonicCalibrator().fit(x, y)):
        back = calibrator_from_dict(model.to_dict())
        assert np.array_equal(back.predict(x), model.predict(x))
    with pytest.raises(ReidError, match="unknown calibrator kind"):
        calibrator_from_dict({"kind": "magic"})
    with pytest.raises(ReidError, match="malformed"):
        calibrator_from_dict({"kind": "logistic", "weights": [1.0]})
    with pytest.raises(ValueError, match="outcomes"):
        LogisticCalibrator().fit([1.0, 2.0], [0, 2])


def toy3(n=6000, seed=0):
    """Three outcomes from a known softmax model of two features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * [1.0, 2.0] + [0.5, -1.0]
    w = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, -0.5]])
    b = np.array([0.0, 0.5, -0.5])
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    return x, y, p


def test_multinomial_recovers_the_generating_model_and_is_calibrated():
    x, y, _ = toy3()
    model = MultinomialCalibrator(names=("a", "b"), classes=("u", "v", "w"), l2=1e-3).fit(x, y)
    w = np.asarray(model.weights)
    # Softmax weights are defined up to a common shift: compare differences to class 0.
    assert w[1] - w[0] == pytest.approx([-2.0, 1.0], abs=0.2)
    assert w[2] - w[0] == pytest.approx([-3.0, -0.5], abs=0.2)
    xt, yt, pt = toy3(seed=1)
    pred = model.predict(xt)
    assert pred.shape == (len(xt), 3)
    assert np.allclose(pred.sum(1), 1.0, atol=1e-3)
    assert np.max(np.abs(pred - pt)) < 0.08
    for k in range(3):
        assert expected_calibration_error(pred[:, k], yt == k) < 0.03
    assert model.counts == np.bincount(y, minlength=3).tolist()


def test_multinomial_prior_shift_moves_one_outcome_by_its_odds():
    x, y, _ = toy3(2000)
    model = MultinomialCalibrator(classes=("u", "v", "w")).fit(x, y)
    p0 = model.predict(x[:50])
    p1 = model.predict(x[:50], shift=[0.0, 0.0, np.log(3.0)])
    # The odds of "w" against the rest triple; "u" and "v" keep their ratio.
    odds0, odds1 = p0[:, 2] / (1 - p0[:, 2]), p1[:, 2] / (1 - p1[:, 2])
    assert np.allclose(odds1 / odds0, 3.0, rtol=1e-3)
    assert np.allclose(p1[:, 0] / p1[:, 1], p0[:, 0] / p0[:, 1], rtol=1e-6)


def test_multinomial_round_trip_and_refusals():
    x, y, _ = toy3(500)
    model = MultinomialCalibrator(names=("a", "b"), classes=("u", "v", "w")).fit(x, y)
    back = calibrator_from_dict(model.to_dict())
    assert isinstance(back, MultinomialCalibrator)
    assert np.array_equal(back.predict(x), model.predict(x))
    bad = model.to_dict() | {"bias": [0.0]}
    with pytest.raises(ReidError, match="malformed"):
        calibrator_from_dict(bad)
    with pytest.raises(ValueError, match="outcomes must be integers"):
        MultinomialCalibrator(classes=("u", "v")).fit(x[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="name the outcomes"):
        MultinomialCalibrator().fit(x[:3], [0, 1, 0])


def test_multinomial_stays_finite_on_collinear_barely_separable_features():
    # The decision model's features are collinear (the fused score is a linear function
    # of the global score and log-inliers) and, on a real catalogue with a weak
    # embedding, "other" and "new" look alike. An undamped Newton fit once ran off along
    # a flat direction (intercepts ~1e5, P(new) = 0 for every query) on such data.
    rng = np.random.default_rng(1)
    n = 210
    y = np.r_[np.zeros(13), np.ones(92), np.full(105, 2)].astype(int)
    g = rng.normal(0.7, 0.05, n)
    log_inliers = np.where(rng.random(n) < 0.9, 0, np.log1p(rng.integers(1, 9, n)))
    g[y == 0] += 0.03
    log_inliers[y == 0] = np.log1p(rng.integers(0, 12, 13))
    margin = rng.exponential(0.1, n)
    margin[y == 0] += 0.5
    x = np.column_stack([1.86 * g + 1.22 * log_inliers - 4.14, margin, g, log_inliers])
    model = MultinomialCalibrator(classes=("top", "other", "new"), l2=1.0).fit(x, y)
    assert np.all(np.abs(model.bias) < 100) and np.all(np.abs(model.weights) < 100)
    p = model.predict(x)
    assert np.allclose(p.mean(0), np.bincount(y) / n, atol=0.03)
    assert p[y == 0, 0].mean() > p[y != 0, 0].mean()


def test_multinomial_temperature_is_found_applied_and_stored():
    x, y, _ = toy3()
    model = MultinomialCalibrator(names=("a", "b"), classes=("u", "v", "w"), l2=1e-3).fit(x, y)
    # Outcomes drawn from the same model, sharpened: log-odds / 0.6.
    rng = np.random.default_rng(3)
    xt = rng.normal(size=(6000, 2)) * [1.0, 2.0] + [0.5, -1.0]
    z = model.logits(xt) / 0.6
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    yt = np.array([rng.choice(3, p=row) for row in p])
    assert model.fit_temperature(xt, yt) == pytest.approx(0.6, rel=0.1)
    assert model.temperature == 1.0  # found, not set
    # Its own outcomes need none; a prior shift is applied after the temperature.
    assert model.fit_temperature(x, y) == pytest.approx(1.0, rel=0.1)
    model.temperature = 0.6
    assert np.allclose(model.predict(xt), p, atol=2e-4)  # predict clips at 1e-4
    shifted = model.predict(xt, shift=[0.0, 0.0, np.log(2.0)])
    plain = model.predict(xt)
    inside = np.all((plain > 1e-3) & (shifted > 1e-3), axis=1)  # away from the clipping
    odds = (shifted[inside, 2] / shifted[inside, 0]) / (plain[inside, 2] / plain[inside, 0])
    assert inside.sum() > 1000 and np.allclose(odds, 2.0, rtol=1e-6)
    back = calibrator_from_dict(model.to_dict())
    assert back.temperature == 0.6 and np.array_equal(back.predict(xt), model.predict(xt))
    # Calibrators written before temperatures existed read back untempered.
    old = model.to_dict()
    del old["temperature"]
    assert calibrator_from_dict(old).temperature == 1.0
    for bad in (0, -1.0, float("nan"), "hot"):
        with pytest.raises(ReidError, match="temperature"):
            calibrator_from_dict(model.to_dict() | {"temperature": bad})
    with pytest.raises(ValueError, match="outcomes"):
        model.fit_temperature(xt[:5], yt[:4])
