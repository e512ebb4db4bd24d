"""Simulated SCR surveys with known density, for tests and the benchmark (bench/bench_scr.py).

Activity centres are a Poisson number (mean D x area) of points uniform over a rectangle
around the detectors; detections follow the model of :mod:`reid.scr.fit` with the
detectors' usage. All randomness comes from the ``seed`` (a numpy Generator), never the
global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid.scr.data import CaptureHistory, Detectors, ScrDataError


def border_grid(
    n_x: int,
    n_y: int,
    spacing_m: float,
    n_occasions: int,
    countries: tuple[str, str] = ("RU", "CN"),
    border_x_m: float | None = None,
    usage_days: float = 1.0,
    p_inactive: float = 0.0,
    jitter_m: float = 0.0,
    seed: int | np.random.Generator = 0,
) -> Detectors:
    """A grid of n_x by n_y camera stations spanning a border, the line x = ``border_x_m``.

    Stations west of the line (x < border) are in ``countries[0]``, the others in
    ``countries[1]``; by default the line runs through the middle of the grid, between
    two columns. ``usage_days`` is the effort per occasion; each detector-occasion is
    inactive (usage 0: stolen, flat battery) with probability ``p_inactive``.
    """
    if n_x < 1 or n_y < 1 or n_occasions < 1:
        raise ScrDataError("a grid needs at least one column, row and occasion")
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(n_x) * spacing_m, np.arange(n_y) * spacing_m)
    xy = np.column_stack([gx.ravel(), gy.ravel()]).astype(float)
    if jitter_m > 0:
        xy += rng.uniform(-jitter_m, jitter_m, size=xy.shape)
    if border_x_m is None:
        border_x_m = (n_x - 1) * spacing_m / 2.0
        if n_x % 2 == 1:  # keep the middle column off the line
            border_x_m += spacing_m / 2.0
    usage = np.full((xy.shape[0], n_occasions), float(usage_days))
    if p_inactive > 0:
        usage[rng.random(usage.shape) < p_inactive] = 0.0
        usage[usage.sum(axis=1) == 0, 0] = usage_days  # every detector operates at least once
    country = tuple(countries[0] if x < border_x_m else countries[1] for x in xy[:, 0])
    ids = tuple(f"C{k:03d}" for k in range(xy.shape[0]))
    return Detectors(ids=ids, xy=xy, usage=usage, country=country)


@dataclass(frozen=True)
class SimulatedSurvey:
    history: CaptureHistory  # detected animals only
    centres: np.ndarray  # (N_total, 2) activity centres of all animals in the region
    detected: np.ndarray  # (N_total,) bool: which of them the history holds, in order
    region: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, metres
    density_per_100km2: float

    @property
    def n_animals(self) -> int:
        return int(self.centres.shape[0])

    @property
    def region_area_km2(self) -> float:
        x0, y0, x1, y1 = self.region
        return (x1 - x0) * (y1 - y0) / 1e6


def simulate_survey(
    detectors: Detectors,
    density_per_100km2: float,
    sigma_m: float,
    g0: float | None = None,
    lambda0: float | None = None,
    detector_type: str = "proximity",
    buffer_m: float | None = None,
    seed: int | np.random.Generator = 0,
) -> SimulatedSurvey:
    """One survey: centres uniform in the detectors' bounding box + ``buffer_m`` (5 sigma).

    Proximity: detection of an animal at detector k on occasion s with probability
    ``1 - (1 - g)^usage``; count: Poisson with mean ``usage * lambda``.
    """
    if detector_type == "proximity" and (g0 is None or not 0 < g0 < 1):
        raise ScrDataError(f"proximity detectors need 0 < g0 < 1, got {g0}")
    if detector_type == "count" and (lambda0 is None or not lambda0 > 0):
        raise ScrDataError(f"count detectors need lambda0 > 0, got {lambda0}")
    if detector_type not in ("proximity", "count"):
        raise ScrDataError(f"unknown detector type {detector_type!r}")
    rng = np.random.default_rng(seed)
    buffer_m = 5.0 * sigma_m if buffer_m is None else float(buffer_m)
    lo = detectors.xy.min(axis=0) - buffer_m
    hi = detectors.xy.max(axis=0) + buffer_m
    area_m2 = float(np.prod(hi - lo))
    n_total = rng.poisson(density_per_100km2 * area_m2 / 1e8)
    centres = rng.uniform(lo, hi, size=(n_total, 2))
    d2 = ((centres[:, None, :] - detectors.xy[None, :, :]) ** 2).sum(axis=2)  # (N, K)
    kernel = np.exp(-d2 / (2 * sigma_m**2))
    usage = detectors.usage
    if detector_type == "proximity":
        g = g0 * kernel
        p = -np.expm1(usage[None, :, :] * np.log1p(-g)[:, :, None])  # (N, K, S)
        counts = (rng.random(p.shape) < p).astype(np.int64)
    else:
        mean = usage[None, :, :] * (lambda0 * kernel)[:, :, None]
        counts = rng.poisson(mean).astype(np.int64)
    detected = counts.sum(axis=(1, 2)) > 0
    history = CaptureHistory(
        individuals=tuple(f"A{i:04d}" for i in np.flatnonzero(detected)),
        detectors=detectors,
        counts=counts[detected],
        detector_type=detector_type,
    )
    return SimulatedSurvey(
        history=history,
        centres=centres,
        detected=detected,
        region=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
        density_per_100km2=float(density_per_100km2),
    )
