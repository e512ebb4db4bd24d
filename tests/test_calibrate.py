"""Calibration: logistic and isotonic calibrators on toy sets with known answers."""

import numpy as np
import pytest

from reid.calibrate import IsotonicCalibrator, LogisticCalibrator, calibrator_from_dict
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
