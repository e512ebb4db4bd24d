"""Score calibration: turning match scores into probabilities that mean what they say.

Two calibrators, both plain numpy and both stored as JSON with the gallery index:

- :class:`LogisticCalibrator`: logistic regression on a few features (Platt scaling is
  the one-feature case), fitted by iteratively reweighted least squares with a small
  ridge penalty. Features are standardised inside, so the penalty treats them alike.
  With ``monotone=True`` no feature may lower the probability as it grows: a feature
  that would get a negative weight is dropped and the model refitted (a higher
  similarity must never make a match less likely, whatever a small sample says).
- :class:`MultinomialCalibrator`: multinomial (softmax) logistic regression over K
  mutually exclusive outcomes, fitted by Newton's method with a ridge penalty; a prior
  shift per class moves the fitted base rates to those of the population it is used on.
- :class:`IsotonicCalibrator`: the monotone step function of one score that fits the
  outcomes best in least squares (pool-adjacent-violators), interpolated linearly
  between the blocks and clipped away from exactly 0 and 1.

``fit(x, y)`` takes features ``x`` (N, F) (or (N,) for one feature) and outcomes
``y`` in {0, 1}; ``predict(x)`` returns probabilities. :func:`calibrator_from_dict`
reads either kind back from :meth:`to_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reid.errors import ReidError

#: Probabilities are kept within [EPS, 1 - EPS]: no finite evidence is certainty.
EPS = 1e-4


def _features(x: np.ndarray | Sequence, n_features: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {a.shape}")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features, got {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise ValueError("features must be finite")
    return a


def _outcomes(y: np.ndarray | Sequence, n: int) -> np.ndarray:
    b = np.asarray(y).ravel()
    if b.shape != (n,):
        raise ValueError(f"{n} samples but {b.size} outcomes")
    if not np.all((b == 0) | (b == 1)):
        raise ValueError("outcomes must be 0/1 or booleans")
    return b.astype(np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


@dataclass
class LogisticCalibrator:
    """P(y = 1 | x) = sigmoid(bias + weights · x), on raw (unstandardised) features."""

    names: tuple[str, ...] = ()
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    l2: float = 1e-2
    monotone: bool = True
    n_samples: int = 0
    positives: int = 0

    kind = "logistic"

    def fit(self, x: np.ndarray | Sequence, y: np.ndarray | Sequence) -> LogisticCalibrator:
        """Fit on features ``x`` (N, F) and outcomes ``y``; returns self."""
        a = _features(x)
        b = _outcomes(y, len(a))
        if not self.names:
            self.names = tuple(f"x{i}" for i in range(a.shape[1]))
        if len(self.names) != a.shape[1]:
            raise ValueError(f"{len(self.names)} feature names for {a.shape[1]} features")
        self.n_samples, self.positives = len(b), int(b.sum())
        if self.positives in (0, len(b)):
            # One class only: the best calibrated answer is its (smoothed) frequency.
            self.weights = [0.0] * a.shape[1]
            p = (self.positives + 0.5) / (len(b) + 1.0)
            self.bias = float(np.log(p / (1 - p)))
            return self
        active = list(range(a.shape[1]))
        while True:
            w, bias = self._irls(a[:, active], b)
            if not self.monotone or np.all(w >= 0) or not active:
                break
            del active[int(np.argmin(w))]  # the most negative weight goes; refit
        self.weights = [0.0] * a.shape[1]
        for j, wj in zip(active, w, strict=True):
            self.weights[j] = float(wj)
        self.bias = float(bias)
        return self

    def _irls(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
        mu = a.mean(axis=0) if a.shape[1] else np.zeros(0)
        sd = a.std(axis=0) if a.shape[1] else np.zeros(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        z = np.hstack([np.ones((len(a), 1)), (a - mu) / sd])
        theta = np.zeros(z.shape[1])
        penalty = np.full(z.shape[1], self.l2)
        penalty[0] = 0.0  # the intercept is not shrunk
        for _ in range(100):
            p = _sigmoid(z @ theta)
            grad = z.T @ (p - b) + penalty * theta
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.max(np.abs(step)) < 1e-9:
                break
        w = theta[1:] / sd
        return w, float(theta[0] - np.dot(w, mu))

    def logit(self, x: np.ndarray | Sequence) -> np.ndarray:
        """The log-odds for features ``x`` (N, F): a score on which ranking is well defined."""
        a = _features(x, len(self.weights))
        return a @ np.asarray(self.weights, np.float64) + self.bias

    def predict(self, x: np.ndarray | Sequence) -> np.ndarray:
        return np.clip(_sigmoid(self.logit(x)), EPS, 1 - EPS)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "names": list(self.names),
            "weights": list(self.weights),
            "bias": self.bias,
            "l2": self.l2,
            "monotone": self.monotone,
            "n_samples": self.n_samples,
            "positives": self.positives,
        }


@dataclass
class IsotonicCalibrator:
    """A non-decreasing map of one score to a probability (pool-adjacent-violators)."""

    x: list[float] = field(default_factory=list)  # block centres, increasing
    y: list[float] = field(default_factory=list)  # fitted probability of each block
    n_samples: int = 0
    positives: int = 0

    kind = "isotonic"

    def fit(self, x: np.ndarray | Sequence, y: np.ndarray | Sequence) -> IsotonicCalibrator:
        s = _features(x, 1)[:, 0]
        b = _outcomes(y, len(s))
        if len(s) == 0:
            raise ValueError("cannot fit a calibrator on no samples")
        self.n_samples, self.positives = len(b), int(b.sum())
        order = np.argsort(s, kind="stable")
        s, b = s[order], b[order]
        # Equal scores form one block from the start: ties cannot be split by the map.
        _, start = np.unique(s, return_index=True)
        counts = np.diff(np.r_[start, len(s)]).astype(np.float64)
        sums = np.add.reduceat(b, start)
        xs = np.add.reduceat(s, start)
        # Pool adjacent violators over a stack of blocks (value, weight, x sum).
        val: list[float] = []
        wt: list[float] = []
        xsum: list[float] = []
        for v, w, xx in zip(sums / counts, counts, xs, strict=True):
            val.append(float(v))
            wt.append(float(w))
            xsum.append(float(xx))
            while len(val) > 1 and val[-2] >= val[-1]:
                w2 = wt[-2] + wt[-1]
                v2 = (val[-2] * wt[-2] + val[-1] * wt[-1]) / w2
                x2 = xsum[-2] + xsum[-1]
                del val[-1], wt[-1], xsum[-1]
                val[-1], wt[-1], xsum[-1] = v2, w2, x2
        self.x = [xx / w for xx, w in zip(xsum, wt, strict=True)]
        self.y = val
        return self

    def predict(self, x: np.ndarray | Sequence) -> np.ndarray:
        if not self.x:
            raise ReidError("the isotonic calibrator is not fitted")
        s = _features(x, 1)[:, 0]
        return np.clip(np.interp(s, self.x, self.y), EPS, 1 - EPS)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "x": list(self.x),
            "y": list(self.y),
            "n_samples": self.n_samples,
            "positives": self.positives,
        }


@dataclass
class MultinomialCalibrator:
    """P(y = k | x) = softmax_k(bias_k + weights_k · x) over K exclusive outcomes.

    Fitted on standardised features by damped Newton steps (the Hessian is small:
    (K - 1) × (F + 1) parameters; outcome 0 is the reference, fixed at 0), with a ridge
    penalty; the weights are stored for raw features. ``predict(x, shift)`` adds
    ``shift[k]`` to outcome k's log-odds: the change of prior from the fitted base rates
    to the ones of the queries it is applied to.

    ``temperature`` T divides the fitted log-odds before the shift (T < 1 sharpens): set
    by :meth:`fit_temperature` when the queries it will see carry stronger evidence than
    the ones it was fitted on (see :func:`reid.match.fit_calibration`).
    """

    names: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    weights: list[list[float]] = field(default_factory=list)  # K x F
    bias: list[float] = field(default_factory=list)  # K
    l2: float = 1e-2
    n_samples: int = 0
    counts: list[int] = field(default_factory=list)
    temperature: float = 1.0

    kind = "multinomial"

    def fit(self, x: np.ndarray | Sequence, y: np.ndarray | Sequence) -> MultinomialCalibrator:
        """Fit on features ``x`` (N, F) and outcomes ``y`` in 0..K-1 (K = len(classes))."""
        a = _features(x)
        if not self.classes:
            raise ValueError("name the outcomes (classes) before fitting")
        k = len(self.classes)
        b = np.asarray(y).ravel()
        if b.shape != (len(a),):
            raise ValueError(f"{len(a)} samples but {b.size} outcomes")
        if len(a) == 0:
            raise ValueError("cannot fit a calibrator on no samples")
        if not np.all((b >= 0) & (b < k) & (b == np.round(b))):
            raise ValueError(f"outcomes must be integers in 0..{k - 1}")
        b = b.astype(np.int64)
        if not self.names:
            self.names = tuple(f"x{i}" for i in range(a.shape[1]))
        if len(self.names) != a.shape[1]:
            raise ValueError(f"{len(self.names)} feature names for {a.shape[1]} features")
        self.n_samples = len(b)
        self.counts = np.bincount(b, minlength=k).astype(int).tolist()
        mu = a.mean(axis=0)
        sd = a.std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        z = np.hstack([np.ones((len(a), 1)), (a - mu) / sd])
        d = z.shape[1]
        onehot = np.eye(k)[b]
        # Outcome 0 is the reference (its parameters stay 0: the softmax is unchanged by
        # a common shift, and fixing one class removes that flat direction); the others
        # start at their smoothed log base rates against it. Weights get the ridge
        # penalty, intercepts a 1000x smaller one (finite even for an absent outcome).
        rates = np.log(self.base_rates())
        theta = np.zeros((k, d))
        theta[:, 0] = rates - rates[0]
        penalty = np.full(d, self.l2)
        penalty[0] = self.l2 * 1e-3

        def loss(t: np.ndarray) -> float:
            logits = z @ t.T
            top = logits.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            nll = float(np.sum(lse - logits[np.arange(len(b)), b]))
            return nll + 0.5 * float(np.sum(penalty * t * t))

        m = (k - 1) * d
        current = loss(theta)
        for _ in range(100):
            p = _softmax(z @ theta.T)
            grad = ((p - onehot).T @ z + penalty * theta)[1:].ravel()
            hess = np.zeros((m, m))
            for i in range(1, k):
                for j in range(1, k):
                    w = p[:, i] * ((i == j) - p[:, j])
                    block = (z * w[:, None]).T @ z
                    hess[(i - 1) * d : i * d, (j - 1) * d : j * d] = block
            hess += np.diag(np.tile(penalty, k - 1) + 1e-9)
            step = np.zeros_like(theta)
            step[1:] = np.linalg.solve(hess, grad).reshape(k - 1, d)
            scale = 1.0
            while scale > 1e-6:  # damped Newton: never accept a step that raises the loss
                trial = theta - scale * step
                value = loss(trial)
                if value <= current + 1e-12:
                    break
                scale /= 2
            else:
                break
            theta, current = trial, value
            if np.max(np.abs(scale * step)) < 1e-9:
                break
        w = theta[:, 1:] / sd
        self.weights = w.tolist()
        self.bias = (theta[:, 0] - w @ mu).tolist()
        return self

    def logits(self, x: np.ndarray | Sequence) -> np.ndarray:
        a = _features(x, len(self.names))
        return a @ np.asarray(self.weights, np.float64).T + np.asarray(self.bias, np.float64)

    def predict(self, x: np.ndarray | Sequence, shift: Sequence[float] | None = None) -> np.ndarray:
        """(N, K) probabilities; the log-odds are divided by ``temperature``, then
        ``shift`` (K,) is added."""
        z = self.logits(x) / self.temperature
        if shift is not None:
            z = z + np.asarray(shift, np.float64)
        return np.clip(_softmax(z), EPS, 1 - EPS)

    def base_rates(self) -> np.ndarray:
        """The outcome frequencies it was fitted on (smoothed)."""
        c = np.asarray(self.counts, np.float64)
        return (c + 0.5) / (c.sum() + 0.5 * len(c))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "names": list(self.names),
            "classes": list(self.classes),
            "weights": [list(w) for w in self.weights],
            "bias": list(self.bias),
            "l2": self.l2,
            "n_samples": self.n_samples,
            "counts": list(self.counts),
            "temperature": self.temperature,
        }

    def fit_temperature(
        self,
        x: np.ndarray | Sequence,
        y: np.ndarray | Sequence,
        shift: Sequence[float] | None = None,
        bounds: tuple[float, float] = (0.25, 4.0),
    ) -> float:
        """The temperature that makes this model best predict outcomes ``y`` of samples
        ``x`` (maximum likelihood, ``shift`` added after it as in :meth:`predict`), by a
        log-spaced search over ``bounds``. Returns it; ``self.temperature`` is unchanged.
        """
        b = np.asarray(y).ravel().astype(np.int64)
        z = self.logits(x)
        if len(b) != len(z) or len(b) == 0:
            raise ValueError(f"{len(z)} samples but {len(b)} outcomes")
        if not np.all((b >= 0) & (b < len(self.classes))):
            raise ValueError(f"outcomes must be integers in 0..{len(self.classes) - 1}")
        s = np.zeros(len(self.classes)) if shift is None else np.asarray(shift, np.float64)
        grid = np.exp(np.linspace(np.log(bounds[0]), np.log(bounds[1]), 481))

        def nll(t: float) -> float:
            p = np.clip(_softmax(z / t + s), 1e-300, 1.0)
            return -float(np.mean(np.log(p[np.arange(len(b)), b])))

        losses = [nll(t) for t in grid]
        return float(grid[int(np.argmin(losses))])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


Calibrator = LogisticCalibrator | IsotonicCalibrator | MultinomialCalibrator


def _temperature(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a positive number, got {value!r}")
    return t


def calibrator_from_dict(data: dict) -> Calibrator:
    """Read a calibrator written by ``to_dict``; a :class:`ReidError` for anything else."""
    try:
        kind = data["kind"]
        if kind == "logistic":
            return LogisticCalibrator(
                names=tuple(data["names"]),
                weights=[float(w) for w in data["weights"]],
                bias=float(data["bias"]),
                l2=float(data.get("l2", 1e-2)),
                monotone=bool(data.get("monotone", True)),
                n_samples=int(data.get("n_samples", 0)),
                positives=int(data.get("positives", 0)),
            )
        if kind == "multinomial":
            names = tuple(data["names"])
            classes = tuple(data["classes"])
            weights = [[float(v) for v in row] for row in data["weights"]]
            bias = [float(v) for v in data["bias"]]
            if len(weights) != len(classes) or len(bias) != len(classes) or not classes:
                raise ValueError("weights, bias and classes differ in length or are empty")
            if any(len(row) != len(names) for row in weights):
                raise ValueError("a weight row does not have one weight per feature")
            return MultinomialCalibrator(
                names=names,
                classes=classes,
                weights=weights,
                bias=bias,
                l2=float(data.get("l2", 1e-2)),
                n_samples=int(data.get("n_samples", 0)),
                counts=[int(c) for c in data.get("counts", [0] * len(classes))],
                temperature=_temperature(data.get("temperature", 1.0)),
            )
        if kind == "isotonic":
            x = [float(v) for v in data["x"]]
            y = [float(v) for v in data["y"]]
            if len(x) != len(y) or not x:
                raise ValueError("x and y differ in length or are empty")
            return IsotonicCalibrator(
                x, y, int(data.get("n_samples", 0)), int(data.get("positives", 0))
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ReidError(f"calibration data is malformed: {e}") from None
    raise ReidError(f"unknown calibrator kind {kind!r} (known: logistic, multinomial, isotonic)")
