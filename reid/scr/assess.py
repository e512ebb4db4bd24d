"""A population assessment from a capture history: mask, SCR fits per country and jointly,
the non-spatial estimate beside them, and activity centres.

The habitat mask (:func:`reid.scr.mask.make_mask`) is the cells within ``buffer_m`` of a
station, clipped to land (Natural Earth, the borders of :mod:`reid.geo`) or to a habitat
polygon given in longitude/latitude, each cell's country from the same borders. The
buffer should be 3-4 σ or more (for tigers σ is 3-7 km, so 25 km by default): the
assessment says when the fitted σ makes it too narrow. Stations that never operated in
the survey window are left out of the fit (and listed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from reid.scr.data import CaptureHistory, Mask, ScrDataError
from reid.scr.histories import HistoryBuild, Projection


@dataclass
class Assessment:
    """What a population report shows. Every coordinate here is exact (see the report
    and :mod:`reid.scr.exports` for what other readers get)."""

    build: HistoryBuild
    history: CaptureHistory  # the fitted one (stations that never worked left out)
    mask: Mask
    transboundary: object  # reid.scr.transboundary.TransboundaryEstimate
    nonspatial: object | None  # reid.scr.fit.ClosedEstimate
    centres_xy: np.ndarray  # (N, 2) posterior mean activity centres, metres
    buffer_m: float
    spacing_m: float
    dropped_stations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    nonspatial_error: str = ""
    seconds: float = 0.0

    @property
    def joint(self):
        return self.transboundary.joint

    def centres_latlon(self) -> list[tuple[float, float]]:
        lat, lon = self.build.projection.inverse(self.centres_xy)
        return list(zip(lat.tolist(), lon.tolist(), strict=True))

    def shareable_warnings(self) -> list[str]:
        """The warnings for a reader without the precise-location permission: the buffer
        warning gives 3 sigma to 0.1 km, finer than sigma is shown to them."""
        return [
            "the mask buffer is under 3 sigma: density may be biased"
            if w.startswith("the mask buffer") else w
            for w in self.warnings
        ]  # fmt: skip

    def to_dict(self, exact: bool = True) -> dict:
        """The estimates and counts: no coordinate of any camera or animal.

        ``exact=False`` is for a reader who may not see every camera's exact place: every
        figure computed from exact distances that the reader could invert (with windows of
        their choosing) is left out or coarsened, see :func:`generalised_estimate`."""
        tb = self.transboundary.to_dict()
        mask = {"buffer_m": self.buffer_m, "spacing_m": self.spacing_m,
                "cells": self.mask.n_cells, "area_km2": round(self.mask.area_km2, 1)}  # fmt: skip
        nonspatial = self.nonspatial.to_dict() if self.nonspatial else None
        dropped, warnings = self.dropped_stations, self.warnings
        if not exact:
            tb["joint"] = generalised_estimate(tb["joint"])
            tb["by_country"] = {c: generalised_estimate(e) for c, e in tb["by_country"].items()}
            tb["sum_of_national_abundance"] = sum(
                e["abundance"] for e in tb["by_country"].values()
            )
            mask = {"buffer_m": self.buffer_m, "spacing_m": self.spacing_m,
                    "area_km2": round_area(self.mask.area_km2)}  # fmt: skip
            nonspatial = generalised_nonspatial(nonspatial) if nonspatial else None
            dropped, warnings = len(self.dropped_stations), self.shareable_warnings()
        return {
            "history": self.build.summary(),
            "mask": mask,
            "joint": tb["joint"],
            "by_country": tb["by_country"],
            "not_fitted": tb["not_fitted"],
            "individuals_by_country": tb["individuals_by_country"],
            "n_shared": tb["n_shared"],
            "shared_individuals": tb["shared_individuals"],
            "sum_of_national_abundance": tb["sum_of_national_abundance"],
            "nonspatial": nonspatial,
            "nonspatial_error": self.nonspatial_error or None,
            "dropped_stations": dropped,
            "warnings": warnings,
            "seconds": round(self.seconds, 2),
        }


#: Areas a reader without exact places gets are rounded to this (km²).
AREA_STEP_KM2 = 100.0
#: ... and sigma (the spatial scale of detection) to this (metres).
SIGMA_STEP_M = 500.0
#: Fields of an SCR estimate left out for such a reader: with the likelihood, the
#: coefficients and their covariance a reader can refit on guessed camera places and
#: compare; the cell count pins the mask area exactly.
PRIVATE_FIELDS = ("coefficients", "vcov", "log_likelihood", "aic", "mask_cells")


def round_area(km2: float | None) -> float | None:
    """An area rounded to :data:`AREA_STEP_KM2`."""
    if km2 is None or not np.isfinite(km2):
        return None
    return float(round(km2 / AREA_STEP_KM2) * AREA_STEP_KM2)


def _round_sigma(m: float | None) -> float | None:
    if m is None or not np.isfinite(m):
        return None
    return float(round(m / SIGMA_STEP_M) * SIGMA_STEP_M)


def generalised_estimate(est: dict) -> dict:
    """An SCR estimate (``ScrEstimate.to_dict()``) as a reader without every exact place
    gets it: areas rounded to 100 km², sigma to 0.5 km, no likelihood, coefficients,
    covariance or mask cell count. Abundance is density times the rounded mask area (the
    exact abundance over the exact density would give the exact area back)."""
    out = {k: v for k, v in est.items() if k not in PRIVATE_FIELDS}
    area = round_area(est.get("mask_area_km2"))
    out["mask_area_km2"] = area
    out["effective_area_km2"] = round_area(est.get("effective_area_km2"))
    for key in ("sigma_m", "sigma_se"):
        out[key] = _round_sigma(est.get(key))
    if est.get("sigma_ci") is not None:
        out["sigma_ci"] = [_round_sigma(v) for v in est["sigma_ci"]]

    def scaled(v):
        return None if v is None or area is None else v * area / 100.0

    out["abundance"] = scaled(est.get("density_per_100km2"))
    out["abundance_se"] = scaled(est.get("density_se"))
    if est.get("density_ci") is not None:
        out["abundance_ci"] = [scaled(v) for v in est["density_ci"]]
    return out


def generalised_nonspatial(est: dict) -> dict:
    """The non-spatial estimate without what exact camera places give it: MMDM, the area
    it buffers and the density over that area (abundance over density is that area)."""
    out = dict(est)
    for key in ("mmdm_m", "area_km2", "density_per_100km2", "density_se", "density_ci"):
        out[key] = None
    out["area_method"] = "left out: it needs exact camera places"
    return out


def land_polygons(projection: Projection, window_deg: tuple[float, float, float, float]) -> dict:
    """``{country: polygon in projected metres}`` of the Natural Earth countries within
    ``window_deg`` (west, east, south, north)."""
    import shapely
    from shapely.geometry import box

    from reid.geo import countries

    x0, x1, y0, y1 = window_deg
    window = box(x0, y0, x1, y1)

    def project(coords: np.ndarray) -> np.ndarray:
        return projection.forward(coords[:, 1], coords[:, 0])

    out = {}
    for code, geom in countries().items():
        if geom.intersects(window):
            part = geom.intersection(window)
            if not part.is_empty and part.area > 0:
                out[code] = shapely.transform(part, project)
    return out


def habitat_polygon(projection: Projection, geojson: dict):
    """A GeoJSON (Multi)Polygon, Feature or FeatureCollection in lon/lat, projected."""
    import shapely
    from shapely.geometry import shape

    try:
        if geojson.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in geojson["features"]]
            geom = shapely.union_all(geoms)
        elif geojson.get("type") == "Feature":
            geom = shape(geojson["geometry"])
        else:
            geom = shape(geojson)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ScrDataError(f"habitat is not a GeoJSON polygon: {exc}") from None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ScrDataError(f"habitat must be a Polygon or MultiPolygon, got {geom.geom_type}")
    return shapely.transform(geom, lambda c: projection.forward(c[:, 1], c[:, 0]))


def assess(
    build: HistoryBuild,
    *,
    buffer_m: float = 25_000.0,
    spacing_m: float = 2_000.0,
    habitat: dict | None = None,
    land_only: bool = True,
    max_work: float | None = None,
) -> Assessment:
    """Mask, joint and per-country SCR fits, the non-spatial estimate, activity centres.

    ``max_work``: the most mask cells × detectors × occasions to fit (what a fit's time
    and memory grow with); more is refused before fitting."""
    from reid.scr.fit import activity_centres, fit_nonspatial
    from reid.scr.mask import make_mask
    from reid.scr.transboundary import fit_by_country

    started = time.perf_counter()
    ch = build.history
    working = ch.detectors.usage.sum(axis=1) > 0
    dropped = [ch.detectors.ids[k] for k in np.flatnonzero(~working)]
    if not working.any():
        raise ScrDataError("no station operated in the survey window")
    if dropped:
        ch = ch.subset_detectors(working)
    lat = [s.lat for s in build.stations]
    lon = [s.lon for s in build.stations]
    pad_lat = buffer_m / 111_000 + 0.1
    pad_lon = buffer_m / (111_000 * max(0.1, np.cos(np.radians(np.mean(lat))))) + 0.1
    window = (min(lon) - pad_lon, max(lon) + pad_lon, min(lat) - pad_lat, max(lat) + pad_lat)
    polygons = land_polygons(build.projection, window)
    area = None
    if habitat is not None:
        area = habitat_polygon(build.projection, habitat)
    elif land_only and polygons:
        import shapely

        area = shapely.union_all(list(polygons.values()))
    mask = make_mask(ch.detectors, buffer_m, spacing_m, habitat=area,
                     country_polygons=polygons or None)  # fmt: skip
    work = mask.n_cells * ch.detectors.n_detectors * ch.detectors.n_occasions
    if max_work is not None and work > max_work:
        # (the cell count is left out: it gives the mask's exact area)
        raise ScrDataError(
            f"too much work for one request: mask cells x {ch.detectors.n_detectors} "
            f"detectors x {ch.detectors.n_occasions} occasions is over {max_work:,.0f}: "
            "use longer occasions, a shorter survey or a coarser mask"
        )
    tb = fit_by_country(ch, mask)
    warnings = [w for w in (build.flank_warning(),) if w]
    joint = tb.joint
    if not joint.converged:
        warnings.append(f"the joint fit did not converge: {joint.message}")
    if joint.sigma_m * 3 > buffer_m:
        warnings.append(
            f"the mask buffer ({buffer_m / 1000:.0f} km) is under 3 sigma "
            f"({3 * joint.sigma_m / 1000:.1f} km): widen it (--buffer-km) and refit"
        )
    if joint.sigma_m < 2 * spacing_m:
        warnings.append(
            f"the mask spacing ({spacing_m / 1000:.1f} km) is over sigma/2: make it finer"
        )
    try:
        nonspatial, ns_error = fit_nonspatial(ch), ""
    except ScrDataError as exc:
        nonspatial, ns_error = None, str(exc)
    centres = activity_centres(ch, mask, joint)
    return Assessment(
        build=build, history=ch, mask=mask, transboundary=tb, nonspatial=nonspatial,
        centres_xy=np.asarray(centres), buffer_m=buffer_m, spacing_m=spacing_m,
        dropped_stations=dropped, warnings=warnings, nonspatial_error=ns_error,
        seconds=time.perf_counter() - started,
    )  # fmt: skip
