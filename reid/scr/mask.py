"""Habitat masks: the grid of points where an animal's activity centre may lie.

:func:`make_mask` is ``secr::make.mask(type = "trapbuffer")``: square cells of side
``spacing_m`` whose centres lie within ``buffer_m`` of a detector, optionally clipped by
a habitat polygon. The buffer should be wide enough that an animal centred beyond it has
practically no chance of being detected (3-4 sigma for a half-normal detection function)
and the spacing fine enough not to bias the integral (sigma/2 or finer).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reid.scr.data import Detectors, Mask, ScrDataError


def _contains(polygon, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import shapely

    if not isinstance(polygon, (shapely.Polygon, shapely.MultiPolygon)):
        raise ScrDataError(
            f"habitat must be a shapely Polygon or MultiPolygon, got {type(polygon).__name__}"
        )
    if polygon.is_empty:
        raise ScrDataError("habitat polygon is empty")
    return shapely.contains_xy(polygon, x, y)


def make_mask(
    detectors: Detectors,
    buffer_m: float,
    spacing_m: float,
    habitat=None,
    country_polygons: Mapping[str, object] | None = None,
) -> Mask:
    """Cells within ``buffer_m`` of any detector, clipped to ``habitat`` when given.

    Each cell's country is the key of the ``country_polygons`` entry that contains its
    centre (None where none does); without ``country_polygons`` it is the country of the
    nearest detector, which draws the border half-way between the two countries' cameras.
    """
    buffer_m, spacing_m = float(buffer_m), float(spacing_m)
    if not (np.isfinite(buffer_m) and buffer_m > 0):
        raise ScrDataError(f"mask buffer must be > 0 metres, got {buffer_m}")
    if not (np.isfinite(spacing_m) and spacing_m > 0):
        raise ScrDataError(f"mask spacing must be > 0 metres, got {spacing_m}")
    xy = detectors.xy
    lo, hi = xy.min(axis=0) - buffer_m, xy.max(axis=0) + buffer_m
    n_x = int(np.ceil((hi[0] - lo[0]) / spacing_m))
    n_y = int(np.ceil((hi[1] - lo[1]) / spacing_m))
    if n_x * n_y > 4_000_000:
        raise ScrDataError(
            f"mask of {n_x} x {n_y} cells is too large: use a wider spacing than {spacing_m} m"
        )
    gx = lo[0] + spacing_m * (np.arange(n_x) + 0.5)
    gy = lo[1] + spacing_m * (np.arange(n_y) + 0.5)
    px, py = (a.ravel() for a in np.meshgrid(gx, gy))
    # nearest detector per candidate cell, in chunks to bound memory
    nearest = np.empty(px.size, dtype=np.int64)
    nearest_d2 = np.empty(px.size)
    for start in range(0, px.size, 20_000):
        sl = slice(start, start + 20_000)
        d2 = (px[sl, None] - xy[None, :, 0]) ** 2 + (py[sl, None] - xy[None, :, 1]) ** 2
        nearest[sl] = d2.argmin(axis=1)
        nearest_d2[sl] = d2[np.arange(d2.shape[0]), nearest[sl]]
    keep = nearest_d2 <= buffer_m**2
    if habitat is not None:
        keep &= _contains(habitat, px, py)
    if not keep.any():
        raise ScrDataError("the mask has no cells: the habitat polygon misses the buffer")
    px, py, nearest = px[keep], py[keep], nearest[keep]
    if country_polygons:
        country: list[str | None] = [None] * px.size
        for code, polygon in country_polygons.items():
            inside = _contains(polygon, px, py)
            for i in np.flatnonzero(inside):
                if country[i] is None:
                    country[i] = code
    elif any(c is not None for c in detectors.country):
        country = [detectors.country[k] for k in nearest]
    else:
        country = []
    return Mask(xy=np.column_stack([px, py]), cell_area_m2=spacing_m**2, country=tuple(country))
