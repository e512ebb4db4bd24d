"""Maps for people who would rather look than read: borders, sightings, tracks.

Country borders come from :mod:`reid.geo` (Natural Earth, installed with the package),
drawn with matplotlib in plain longitude/latitude, which at the scale of a landscape (a
few hundred km) is close enough to true shape. The figure is drawn on its own Agg canvas
(``Figure`` + ``FigureCanvasAgg``, never pyplot), so no display is needed and the
process's matplotlib backend is left alone: inline plots in a notebook keep working after
a map is written. Coordinates are whatever the viewer may see, so a map made without the
precise-location permission shows grid-cell centres only.

With nothing to show (no sightings, sites or movements), the map is still drawn: the
borders of :data:`DEFAULT_EXTENT`, the tiger and leopard range.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reid.movements import MovementView
from reid.registry.services import SightingView

#: (west, east, south, north) in degrees: Africa and Asia, where tigers and leopards live;
#: the window of a map with no points on it.
DEFAULT_EXTENT: tuple[float, float, float, float] = (-20.0, 150.0, -36.0, 56.0)


def draw_map(
    out: Path,
    sightings: list[SightingView],
    moves: list[MovementView],
    title: str,
    margin_deg: float = 0.5,
    *,
    sites: Sequence[tuple[str, float, float]] = (),
    extent: tuple[float, float, float, float] | None = None,
) -> Path:
    """Draw sightings (dots, by individual), ``sites`` (``(code, lat, lon)``, hollow
    triangles), movements (arrows) and borders to ``out``.

    The window fits the points with a margin, or is ``extent`` (west, east, south,
    north); with no points and no extent it is :data:`DEFAULT_EXTENT`.
    """
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from shapely.geometry import box

    from reid.geo import countries

    points = [(v.lon, v.lat) for v in sightings] + [(lon, lat) for _, lat, lon in sites]
    points += [(m.from_lon, m.from_lat) for m in moves] + [(m.to_lon, m.to_lat) for m in moves]
    if extent is not None:
        x0, x1, y0, y1 = extent
    elif points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        span = max(max(xs) - min(xs), max(ys) - min(ys), 0.2)
        pad = max(margin_deg, span * 0.15)
        x0, x1, y0, y1 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    else:
        x0, x1, y0, y1 = DEFAULT_EXTENT
    window = box(x0, y0, x1, y1)
    wide = max(x1 - x0, y1 - y0) > 20  # a continent: smaller labels, none on islets
    tolerance = max(x1 - x0, y1 - y0) / 2000  # well under a pixel of the 8-inch figure
    min_area = tolerance**2 if wide else 0.0
    fig = Figure(figsize=(8, 8 * (y1 - y0) / max(x1 - x0, 1e-6) if x1 > x0 else 8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_facecolor("#dcecf5")
    land = []  # one collection of polygons: far faster than a patch per polygon
    for code, geom in countries().items():
        if not geom.intersects(window):
            continue
        part = geom.intersection(window)
        if wide:  # 1:10m borders have far more points than a continent's pixels
            part = part.simplify(tolerance, preserve_topology=False)
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type == "Polygon" and poly.area >= min_area:
                land.append(np.asarray(poly.exterior.coords))
        if wide and part.area < 0.002 * window.area:
            continue
        c = part.representative_point()
        ax.annotate(code, (c.x, c.y), color="#777777", fontsize=7 if wide else 14,
                    ha="center", zorder=2)  # fmt: skip
    ax.add_collection(PolyCollection(land, facecolor="#f4f1e8", edgecolor="#555555",
                                     linewidth=0.8, zorder=1))  # fmt: skip
    for code, lat, lon in sites:
        ax.scatter([lon], [lat], s=40, marker="^", facecolor="none", edgecolor="#333333",
                   linewidth=1.0, zorder=3)  # fmt: skip
        ax.annotate(code, (lon, lat), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, color="#333333", zorder=3)  # fmt: skip
    individuals = sorted({v.individual or "?" for v in sightings})
    cmap = matplotlib.colormaps["tab10"]
    for i, ind in enumerate(individuals):
        mine = [v for v in sightings if (v.individual or "?") == ind]
        ax.scatter([v.lon for v in mine], [v.lat for v in mine], s=30, color=cmap(i % 10),
                   edgecolor="black", linewidth=0.5, zorder=4, label=ind)  # fmt: skip
    for m in moves:
        ax.annotate("", xy=(m.to_lon, m.to_lat), xytext=(m.from_lon, m.from_lat), zorder=3,
                    arrowprops={"arrowstyle": "->", "color": "#b22222", "lw": 1.5})  # fmt: skip
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    if 0 < len(individuals) <= 12:
        ax.legend(loc="best", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out
