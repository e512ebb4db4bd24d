"""Maximum-likelihood spatial capture-recapture (SCR) density, and a non-spatial estimate.

Model (Borchers & Efford 2008; Royle et al. 2014, ch. 6; ``secr.fit`` with
``detectfn = "HN"`` and the full likelihood, ``CL = FALSE``):

* Activity centres form a homogeneous Poisson process of density D over the mask.
* Half-normal detection at distance d from the activity centre,
  ``g(d) = g0 exp(-d^2 / 2 sigma^2)`` (proximity) or ``lambda(d) = lambda0 exp(...)``
  (count).
* Proximity detectors: at most one detection per individual, detector and occasion, with
  probability ``p = 1 - (1 - g)^usage`` (effort as a linear coefficient on the hazard
  scale, secr's varying-effort convention; usage 1 gives ``p = g``).
  Count detectors: Poisson with mean ``usage * lambda``.
* Full likelihood with N ~ Poisson: for n detected animals with histories w_i,
  ``log L = n log D - D a(theta) + sum_i log integral Pr(w_i | x) dx - sum_w log n_w!``
  where ``a(theta) = integral p.(x) dx`` is the effective sampling area and n_w the number
  of animals that share history w. Integrals are sums over mask cells times cell area.

D, sigma and g0/lambda0 are fitted jointly on log, log and logit/log scales with
``scipy.optimize.minimize`` (D is profiled out while optimising: D = n / a(theta), the
same maximum). Standard errors come from a central finite-difference Hessian of the
negative log-likelihood at the optimum; intervals are Wald intervals on the link scale,
back-transformed (log-normal for D, N, sigma, lambda0; logit for g0), as secr reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from reid.scr.data import CaptureHistory, Mask, ScrDataError

Z95 = 1.959963984540054
M2_PER_100KM2 = 1e8


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScrEstimate:
    """A fitted SCR model. Density per 100 km²; sigma in metres; intervals are 95 %."""

    density_per_100km2: float
    density_se: float
    density_ci: tuple[float, float]
    abundance: float  # expected number of activity centres in the mask, D x mask area
    abundance_se: float
    abundance_ci: tuple[float, float]
    sigma_m: float
    sigma_se: float
    sigma_ci: tuple[float, float]
    g0: float | None
    g0_se: float | None
    g0_ci: tuple[float, float] | None
    lambda0: float | None
    lambda0_se: float | None
    lambda0_ci: tuple[float, float] | None
    detector_type: str
    n_individuals: int
    n_detections: int
    n_detectors: int
    n_occasions: int
    mask_area_km2: float
    mask_cells: int
    effective_area_km2: float  # a(theta): the area sampled, integral of p.(x)
    log_likelihood: float
    aic: float
    converged: bool
    fit_seconds: float
    likelihood: str = "full (Poisson N, D estimated jointly)"
    # link scale: log D per 100 km², log sigma in km, logit g0 (or log lambda0)
    coefficients: tuple[float, ...] = ()
    vcov: tuple[tuple[float, ...], ...] = ()
    message: str = ""

    @property
    def detection_intercept(self) -> float:
        return self.g0 if self.detector_type == "proximity" else self.lambda0

    def to_dict(self) -> dict:
        return _estimate_dict(self)


@dataclass(frozen=True)
class ClosedEstimate:
    """Non-spatial closed-population estimate, model M0 (Otis et al. 1978), full likelihood.

    Individuals are captured on an occasion if detected at any detector. Abundance is
    that of the animals exposed to the array, an area that the model does not know: the
    density divides it by the detectors' convex hull buffered by half the mean maximum
    distance moved (½MMDM, Wilson & Anderson 1985), the pre-SCR practice.
    """

    model: str
    abundance: float
    abundance_se: float
    abundance_ci: tuple[float, float]  # Chao's log-normal interval (never below n)
    p: float
    p_se: float
    p_ci: tuple[float, float]
    n_individuals: int
    n_occasions: int
    n_captures: int
    mmdm_m: float | None
    area_km2: float | None
    area_method: str
    density_per_100km2: float | None
    density_se: float | None
    density_ci: tuple[float, float] | None
    log_likelihood: float
    converged: bool

    def to_dict(self) -> dict:
        return _estimate_dict(self)


def _estimate_dict(estimate) -> dict:
    """An estimate as JSON-ready values: tuples as lists, non-finite floats as None."""
    out = asdict(estimate)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = _jsonable(value)
        elif isinstance(value, float) and not math.isfinite(value):
            out[key] = None
    return out


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------- validation


def check_fittable(ch: CaptureHistory, mask: Mask) -> None:
    """Raise :class:`ScrDataError` when ``ch`` cannot be fitted on ``mask``."""
    if not isinstance(ch, CaptureHistory):
        raise ScrDataError(f"expected a CaptureHistory, got {type(ch).__name__}")
    if not isinstance(mask, Mask):
        raise ScrDataError(f"expected a Mask, got {type(mask).__name__}")
    if ch.n_individuals == 0 or ch.counts.sum() == 0:
        raise ScrDataError("no detections: density cannot be estimated from an empty survey")
    per_individual = ch.counts.sum(axis=(1, 2))
    if np.any(per_individual == 0):
        empty = [ch.individuals[i] for i in np.flatnonzero(per_individual == 0)]
        raise ScrDataError(
            f"individual(s) with no detections in the capture history: {', '.join(empty[:5])}"
        )
    never = np.flatnonzero(ch.detectors.usage.sum(axis=1) == 0)
    if never.size:
        names = ", ".join(ch.detectors.ids[k] for k in never[:5])
        raise ScrDataError(
            f"detector(s) never operating (usage 0 on every occasion): {names}; drop them"
        )
    extent = max(float(np.ptp(mask.xy, axis=0).max()), math.sqrt(mask.cell_area_m2))
    nearest = min(float(np.sqrt(((mask.xy - xy) ** 2).sum(axis=1)).min()) for xy in ch.detectors.xy)
    if nearest > extent:
        raise ScrDataError(
            f"the mask lies {nearest / 1000:.0f} km from the nearest detector: does the mask "
            "cover the detectors, in the same projected metres?"
        )
    n_sites = (ch.counts.sum(axis=2) > 0).sum(axis=1)
    if not np.any(n_sites >= 2):
        raise ScrDataError(
            "sigma cannot be estimated: no individual was detected at more than one detector"
        )


# ------------------------------------------------------------------------- likelihood


class _Likelihood:
    """The negative log-likelihood of one capture history on one mask, vectorised.

    Coordinates are in km. Only the per-detector total effort and, for proximity
    detectors, the (detector, usage) pairs of the detections enter the likelihood.
    """

    def __init__(self, ch: CaptureHistory, mask: Mask):
        check_fittable(ch, mask)
        self.ch, self.mask = ch, mask
        self.proximity = ch.detector_type == "proximity"
        det_xy = ch.detectors.xy / 1000.0
        mask_xy = mask.xy / 1000.0
        self.d2 = ((mask_xy[:, None, :] - det_xy[None, :, :]) ** 2).sum(axis=2)  # (M, K)
        self.cell_km2 = mask.cell_area_m2 / 1e6
        usage = ch.detectors.usage
        self.u_total = usage.sum(axis=1)  # (K,)
        self.n = ch.n_individuals
        # animals sharing one history: the multinomial term of the full likelihood
        flat = (ch.counts > 0) if self.proximity else ch.counts
        _, multiplicity = np.unique(flat.reshape(self.n, -1), axis=0, return_counts=True)
        self.log_multiplicity = float(special.gammaln(multiplicity + 1).sum())
        if self.proximity:
            y = ch.counts > 0
            i, k, s = np.nonzero(y)
            u = usage[k, s]
            pairs, inverse = np.unique(np.column_stack([k, u]), axis=0, return_inverse=True)
            self.pair_k = pairs[:, 0].astype(np.int64)
            self.pair_u = pairs[:, 1]
            w = np.zeros((pairs.shape[0], self.n))
            np.add.at(w, (inverse.ravel(), i), 1.0)
            self.w = w  # (J, N): detections of individual i at (detector, usage) pair j
            self.const = np.zeros(self.n)
        else:
            self.y_ik = ch.counts.sum(axis=2).astype(float)  # (N, K)
            y = ch.counts
            with np.errstate(divide="ignore"):
                log_u = np.where(usage > 0, np.log(np.where(usage > 0, usage, 1.0)), 0.0)
            self.const = (y * log_u[None]).sum(axis=(1, 2)) - special.gammaln(y + 1).sum(
                axis=(1, 2)
            )

    # theta = (log sigma_km, logit g0 | log lambda0)
    def parts(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """(a(theta) in km², log Pr(w_i | x_m) as an (N, M) array)."""
        sigma = math.exp(theta[0])
        # floored far below any detectable value: subnormal floats would slow numpy 100x
        z = np.maximum(-self.d2 / (2 * sigma * sigma), -600.0)  # (M, K)
        if self.proximity:
            g0 = special.expit(theta[1])
            log_g = math.log(g0) + z
            g = np.exp(log_g)
            log1m_g = np.log1p(-g)
            base = log1m_g @ self.u_total  # (M,) log Pr(no detection at all)
            lg = log_g[:, self.pair_k]  # (M, J)
            zz = -self.pair_u[None, :] * log1m_g[:, self.pair_k]
            small = zz < 1e-6
            with np.errstate(divide="ignore"):
                exact = np.log(np.expm1(np.where(small, 1.0, zz)))
            approx = (
                np.log(self.pair_u)[None, :]
                + lg
                + np.log1p(0.5 * np.exp(lg) * (1 + self.pair_u[None, :]))
            )
            term = np.where(small, approx, exact)  # log((1-g)^-u - 1), (M, J)
            log_pr = base[None, :] + (term @ self.w).T  # (N, M)
            p_dot = -np.expm1(base)
        else:
            lam0 = math.exp(theta[1])
            log_lam = math.log(lam0) + z
            lam = np.exp(log_lam)
            hazard = lam @ self.u_total  # (M,)
            log_pr = -hazard[None, :] + self.y_ik @ log_lam.T + self.const[:, None]
            p_dot = -np.expm1(-hazard)
        a = float(p_dot.sum() * self.cell_km2)
        return a, log_pr

    def loglik(self, log_d: float, theta: np.ndarray, parts=None) -> float:
        """Full log-likelihood; log_d is log(animals per km²)."""
        a, log_pr = self.parts(theta) if parts is None else parts
        if not (a > 0 and math.isfinite(a)):
            return -math.inf
        integral = special.logsumexp(log_pr, axis=1) + math.log(self.cell_km2)
        ll = self.n * log_d - math.exp(log_d) * a + float(integral.sum()) - self.log_multiplicity
        return ll if math.isfinite(ll) else -math.inf

    def profile(self, theta: np.ndarray) -> tuple[float, float]:
        """(max over D of log L, log D at that maximum) for this theta."""
        parts = self.parts(theta)
        a = parts[0]
        if not (a > 0 and math.isfinite(a)):
            return -math.inf, 0.0
        log_d = math.log(self.n / a)
        return self.loglik(log_d, theta, parts), log_d


def log_likelihood(
    ch: CaptureHistory,
    mask: Mask,
    density_per_100km2: float,
    sigma_m: float,
    g0: float | None = None,
    lambda0: float | None = None,
) -> float:
    """The full SCR log-likelihood of ``ch`` at the given parameters (see module doc)."""
    lik = _Likelihood(ch, mask)
    theta = _theta(ch.detector_type, sigma_m, g0, lambda0)
    return lik.loglik(math.log(density_per_100km2 / 100.0), theta)


def _theta(detector_type: str, sigma_m: float, g0, lambda0) -> np.ndarray:
    if detector_type == "proximity":
        if g0 is None or not 0 < g0 < 1:
            raise ScrDataError(f"proximity detectors need 0 < g0 < 1, got {g0}")
        second = special.logit(g0)
    else:
        if lambda0 is None or not lambda0 > 0:
            raise ScrDataError(f"count detectors need lambda0 > 0, got {lambda0}")
        second = math.log(lambda0)
    if not sigma_m > 0:
        raise ScrDataError(f"sigma must be > 0 metres, got {sigma_m}")
    return np.array([math.log(sigma_m / 1000.0), second])


# ---------------------------------------------------------------------------- fitting


def _start_sigma_km(ch: CaptureHistory) -> float:
    """Root pooled spatial variance (RPSV, as secr's starting value), in km."""
    xy = ch.detectors.xy / 1000.0
    ss, dof = 0.0, 0
    for i in range(ch.n_individuals):
        weights = ch.counts[i].sum(axis=1).astype(float)
        k = np.flatnonzero(weights)
        if weights.sum() < 2:
            continue
        pts = np.repeat(xy[k], weights[k].astype(int), axis=0)
        ss += float(((pts - pts.mean(axis=0)) ** 2).sum())
        dof += pts.shape[0] - 1
    rpsv = math.sqrt(ss / (2 * dof)) if dof and ss > 0 else 0.0
    if rpsv <= 0:
        dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(axis=2))
        dist[dist == 0] = np.inf
        rpsv = float(np.median(dist.min(axis=1)))
    return max(rpsv, 1e-3)


def _hessian(f, x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central finite-difference Hessian of a scalar function (parameters on link scale)."""
    n = x.size
    h = step * np.maximum(1.0, np.abs(x))
    f0 = f(x)
    hess = np.empty((n, n))
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        hess[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(n)
            ej[j] = h[j]
            hess[i, j] = hess[j, i] = (
                f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
            ) / (4 * h[i] * h[j])
    return hess


def _interval(est_link: float, se_link: float, back) -> tuple[float, float]:
    """The 95 % interval back-transformed; a bound beyond what a float holds (a huge
    standard error on the log scale) is inf, never an OverflowError."""
    if not math.isfinite(se_link):
        return (math.nan, math.nan)

    def safe(v: float) -> float:
        try:
            return float(back(v))
        except OverflowError:
            return math.inf if v > 0 else 0.0

    return (safe(est_link - Z95 * se_link), safe(est_link + Z95 * se_link))


def fit_scr(ch: CaptureHistory, mask: Mask) -> ScrEstimate:
    """Fit the half-normal SCR model by maximum likelihood (see the module docstring)."""
    # the matrices are small: one BLAS thread is faster than several fighting for cores
    with threadpool_limits(limits=1):
        return _fit_scr(ch, mask)


def _fit_scr(ch: CaptureHistory, mask: Mask) -> ScrEstimate:
    started = time.perf_counter()
    lik = _Likelihood(ch, mask)
    proximity = lik.proximity
    sigma0 = _start_sigma_km(ch)
    # a coarse search over the detection intercept at the starting sigma
    candidates = []
    for c in (
        (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
        if proximity
        else (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    ):
        second = special.logit(c) if proximity else math.log(c)
        for s_mult in (0.7, 1.0, 1.5):
            theta = np.array([math.log(sigma0 * s_mult), second])
            candidates.append((lik.profile(theta)[0], theta))
    best_start, start = max(candidates, key=lambda t: t[0])
    if not math.isfinite(best_start):
        raise ScrDataError(
            "the likelihood is zero at every starting value: does the mask cover the "
            "detectors, in the same projected metres?"
        )

    def objective(theta):
        value = lik.profile(theta)[0]
        return -value if math.isfinite(value) else 1e300

    result = optimize.minimize(objective, start, method="BFGS", options={"gtol": 1e-6})
    theta = result.x
    if not result.success:
        polish = optimize.minimize(
            objective,
            theta,
            method="Nelder-Mead",
            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000},
        )
        if polish.fun <= result.fun:
            result, theta = polish, polish.x
    ll, log_d = lik.profile(theta)
    # coefficients: log D per 100 km², log sigma_km, logit g0 | log lambda0
    beta = np.array([log_d + math.log(100.0), theta[0], theta[1]])

    def nll(b):
        value = lik.loglik(b[0] - math.log(100.0), b[1:])
        return -value if math.isfinite(value) else 1e300

    hess = _hessian(nll, beta)
    converged = bool(math.isfinite(ll))
    message = str(result.message)
    try:
        vcov = np.linalg.inv(hess)
        if np.any(np.diag(vcov) <= 0) or not np.all(np.isfinite(vcov)):
            raise np.linalg.LinAlgError("Hessian not positive definite")
        eig = np.linalg.eigvalsh(hess)
        if eig.min() <= 0:
            raise np.linalg.LinAlgError("Hessian not positive definite")
    except np.linalg.LinAlgError as exc:
        vcov = np.full((3, 3), math.nan)
        converged = False
        message = f"{message}; {exc}"
    # a boundary or flat optimum: gradient of the full likelihood must vanish
    grad = optimize.approx_fprime(beta, nll, 1e-6)
    if not np.all(np.abs(grad) < 1e-2 * max(1.0, ch.n_individuals)):
        converged = False
        message = f"{message}; gradient not zero at the optimum ({np.abs(grad).max():.3g})"
    se = np.sqrt(np.diag(vcov))
    density = math.exp(beta[0])
    sigma_km = math.exp(beta[1])
    area_km2 = mask.area_km2
    a, _ = lik.parts(theta)
    if proximity:
        g0 = float(special.expit(beta[2]))
        g0_se = g0 * (1 - g0) * se[2]
        g0_ci = _interval(beta[2], se[2], special.expit)
        lam0 = lam0_se = lam0_ci = None
    else:
        lam0 = math.exp(beta[2])
        lam0_se = lam0 * se[2]
        lam0_ci = _interval(beta[2], se[2], math.exp)
        g0 = g0_se = g0_ci = None
    abundance = density * area_km2 / 100.0
    density_ci = _interval(beta[0], se[0], math.exp)
    sigma_ci = _interval(beta[1], se[1], math.exp)
    if math.inf in density_ci + sigma_ci:
        converged = False
        message = f"{message}; a 95 % interval is unbounded (the data barely inform it)"
    return ScrEstimate(
        density_per_100km2=density,
        density_se=density * se[0],
        density_ci=density_ci,
        abundance=abundance,
        abundance_se=abundance * se[0],
        abundance_ci=_interval(math.log(abundance), se[0], math.exp),
        sigma_m=sigma_km * 1000.0,
        sigma_se=sigma_km * 1000.0 * se[1],
        sigma_ci=tuple(1000.0 * v for v in sigma_ci),
        g0=g0,
        g0_se=g0_se,
        g0_ci=g0_ci,
        lambda0=lam0,
        lambda0_se=lam0_se,
        lambda0_ci=lam0_ci,
        detector_type=ch.detector_type,
        n_individuals=ch.n_individuals,
        n_detections=ch.n_detections,
        n_detectors=ch.detectors.n_detectors,
        n_occasions=ch.detectors.n_occasions,
        mask_area_km2=area_km2,
        mask_cells=mask.n_cells,
        effective_area_km2=a,
        log_likelihood=ll,
        aic=-2 * ll + 2 * 3,
        converged=converged,
        fit_seconds=time.perf_counter() - started,
        coefficients=tuple(float(b) for b in beta),
        vcov=tuple(tuple(float(v) for v in row) for row in vcov),
        message=message,
    )


def activity_centres(ch: CaptureHistory, mask: Mask, estimate: ScrEstimate) -> np.ndarray:
    """Posterior mean activity centre (metres, mask coordinates) of each detected animal.

    The posterior of animal i's centre over the mask is proportional to
    Pr(w_i | x) under the fitted detection parameters (uniform prior: homogeneous D).
    These are exact coordinates: generalise them (reid.privacy) before showing them.
    """
    with threadpool_limits(limits=1):
        return _activity_centres(ch, mask, estimate)


def _activity_centres(ch: CaptureHistory, mask: Mask, estimate: ScrEstimate) -> np.ndarray:
    lik = _Likelihood(ch, mask)
    if estimate.detector_type != ch.detector_type:
        raise ScrDataError(
            f"estimate is for {estimate.detector_type} detectors, history is {ch.detector_type}"
        )
    theta = _theta(ch.detector_type, estimate.sigma_m, estimate.g0, estimate.lambda0)
    _, log_pr = lik.parts(theta)
    weights = np.exp(log_pr - special.logsumexp(log_pr, axis=1, keepdims=True))
    return weights @ mask.xy


# ----------------------------------------------------------------- non-spatial (M0)


def _mmdm_m(ch: CaptureHistory) -> float | None:
    """Mean maximum distance moved among animals detected at two or more detectors."""
    xy = ch.detectors.xy
    maxima = []
    for i in range(ch.n_individuals):
        k = np.flatnonzero(ch.counts[i].sum(axis=1))
        if k.size >= 2:
            pts = xy[k]
            maxima.append(float(np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(axis=2)).max()))
    return float(np.mean(maxima)) if maxima else None


#: 95 % point of the chi-square distribution with one degree of freedom
CHI2_95 = 3.841458820694124


def _m0_profile_interval(n: int, s: int, total: int) -> tuple[float, float]:
    """95 % profile-likelihood interval of N under M0 (p profiled out: p = total / (N s)),
    for N on its boundary; lower end no less than the ``n`` animals seen."""

    def profile(big_n: float) -> float:
        p = total / (big_n * s)
        return -(
            special.gammaln(big_n + 1)
            - special.gammaln(big_n - n + 1)
            + total * math.log(p)
            + (big_n * s - total) * math.log1p(-p)
        )

    grid = np.linspace(n, n + max(10.0, 2.0 * n), 2001)
    values = np.array([profile(v) for v in grid])
    best = float(values.min())
    at = float(grid[int(values.argmin())])

    def excess(big_n: float) -> float:
        return 2.0 * (profile(big_n) - best) - CHI2_95

    lo = float(n) if excess(float(n)) <= 0 else optimize.brentq(excess, float(n), at)
    hi_end = at + 1.0
    while excess(hi_end) <= 0:
        hi_end = n + 2.0 * (hi_end - n) + 1.0
    hi = optimize.brentq(excess, at, hi_end)
    return lo, float(hi)


def fit_nonspatial(ch: CaptureHistory, area_km2: float | None = None) -> ClosedEstimate:
    """Closed-population model M0, full likelihood in (N, p), for comparison with SCR.

    An individual is captured on an occasion when detected at any detector; occasions on
    which no detector operated are dropped. ``area_km2`` (optional) is the area that the
    abundance is divided by; by default the detectors' convex hull buffered by ½MMDM.
    """
    if not isinstance(ch, CaptureHistory):
        raise ScrDataError(f"expected a CaptureHistory, got {type(ch).__name__}")
    if ch.n_individuals == 0 or ch.counts.sum() == 0:
        raise ScrDataError("no detections: abundance cannot be estimated from an empty survey")
    active = ch.detectors.usage.sum(axis=0) > 0
    caught = ch.counts.sum(axis=1)[:, active] > 0  # (N, S')
    if np.any(caught.sum(axis=1) == 0):
        raise ScrDataError("an individual has no detections in the capture history")
    n, s = caught.shape
    total = int(caught.sum())
    if total == n:
        raise ScrDataError("no recaptures: a closed-population estimate needs recaptures")

    def nll(par):
        big_n = n + math.exp(par[0])
        p = special.expit(par[1])
        return -(
            special.gammaln(big_n + 1)
            - special.gammaln(big_n - n + 1)
            + total * math.log(p)
            + (big_n * s - total) * math.log1p(-p)
        )

    p0 = total / (n * s)
    result = optimize.minimize(
        nll,
        np.array([math.log(max(0.5, n * 0.1)), special.logit(min(p0, 0.99))]),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000},
    )
    result = optimize.minimize(nll, result.x, method="BFGS")
    f0 = result.x
    hess = _hessian(nll, f0, step=1e-4)
    try:
        vcov = np.linalg.inv(hess)
        if np.any(np.diag(vcov) <= 0):
            raise np.linalg.LinAlgError
        se = np.sqrt(np.diag(vcov))
        converged = True
    except np.linalg.LinAlgError:
        se = np.array([math.nan, math.nan])
        converged = False
    f0_undetected = math.exp(f0[0])
    big_n = n + f0_undetected
    n_se = f0_undetected * se[0]
    p = float(special.expit(f0[1]))
    p_se = p * (1 - p) * se[1]
    # Chao (1987): log-normal interval for the undetected part
    if math.isfinite(n_se) and f0_undetected > 1e-2:
        c = math.exp(Z95 * math.sqrt(math.log1p((n_se / f0_undetected) ** 2)))
        n_ci = (n + f0_undetected / c, n + f0_undetected * c)
    else:
        # the estimate sits on its boundary (every animal seen: N = n), where the Hessian
        # of the log scale is singular: a profile-likelihood interval instead, and the
        # standard error it implies
        n_ci = _m0_profile_interval(n, s, total)
        n_se = (n_ci[1] - n_ci[0]) / (2 * Z95)
    mmdm = _mmdm_m(ch)
    method = "given"
    if area_km2 is None and mmdm is not None:
        import shapely

        hull = shapely.MultiPoint([tuple(p_) for p_ in ch.detectors.xy]).convex_hull
        area_km2 = hull.buffer(mmdm / 2.0, quad_segs=32).area / 1e6
        method = "convex hull of the detectors buffered by half the MMDM"
    if area_km2:
        scale = 100.0 / area_km2
        density, d_se, d_ci = big_n * scale, n_se * scale, (n_ci[0] * scale, n_ci[1] * scale)
    else:
        density = d_se = d_ci = None
        method = "none (no animal detected at two detectors)"
    return ClosedEstimate(
        model="M0 (full likelihood)",
        abundance=big_n,
        abundance_se=n_se,
        abundance_ci=n_ci,
        p=p,
        p_se=p_se,
        p_ci=_interval(f0[1], se[1], special.expit),
        n_individuals=n,
        n_occasions=s,
        n_captures=total,
        mmdm_m=mmdm,
        area_km2=area_km2,
        area_method=method,
        density_per_100km2=density,
        density_se=d_se,
        density_ci=d_ci,
        log_likelihood=-float(result.fun),
        converged=converged and bool(result.success),
    )
