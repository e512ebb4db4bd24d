"""The population map: camera stations, the habitat mask and activity centres across a
border, drawn like :mod:`reid.maps` (Natural Earth borders, plain longitude/latitude, an
Agg canvas of its own).

With ``exact=False`` (a reader without the precise-location permission) nothing on the
map is finer than :mod:`reid.privacy`'s 0.25° grid: stations are the cells holding one
or more (with how many), activity centres the cells holding one or more (with how many
animals), and the mask the cells it touches, so that its edge (which lies exactly
``buffer`` from the outermost cameras) cannot be traced back to them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from reid.privacy import CELL_DEG, generalise

COUNTRY_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _cells(points: list[tuple[float, float]]) -> Counter:
    return Counter(generalise(lat, lon) for lat, lon in points)


def draw_population_map(out: Path, assessment, exact: bool, title: str) -> Path:
    """Write the map of ``assessment`` (a :class:`reid.scr.assess.Assessment`) to ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from shapely.geometry import box

    from reid.geo import countries

    build, mask = assessment.build, assessment.mask
    proj = build.projection
    stations = [(s.lat, s.lon, s.country) for s in build.stations]
    centres = assessment.centres_latlon()
    mlat, mlon = proj.inverse(mask.xy)
    half = mask.cell_area_m2**0.5 / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    if exact:
        cell_polys = []
        for x, y in mask.xy:
            la, lo = proj.inverse(corners + [x, y])
            cell_polys.append(np.column_stack([lo, la]))
    else:
        h = CELL_DEG / 2
        cell_polys = [
            np.array([[lo - h, la - h], [lo + h, la - h], [lo + h, la + h], [lo - h, la + h]])
            for la, lo in _cells(list(zip(mlat, mlon, strict=True)))
        ]
    all_lon = np.concatenate([p[:, 0] for p in cell_polys])
    all_lat = np.concatenate([p[:, 1] for p in cell_polys])
    pad = 0.05
    x0, x1 = all_lon.min() - pad, all_lon.max() + pad
    y0, y1 = all_lat.min() - pad, all_lat.max() + pad
    fig = Figure(figsize=(8, max(4.0, 8 * (y1 - y0) / max(x1 - x0, 1e-6))))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_facecolor("#dcecf5")
    window = box(x0, y0, x1, y1)
    land = []
    for code, geom in countries().items():
        if not geom.intersects(window):
            continue
        part = geom.intersection(window)
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type == "Polygon":
                land.append(np.asarray(poly.exterior.coords))
        c = part.representative_point()
        ax.annotate(code, (c.x, c.y), color="#777777", fontsize=14, ha="center", zorder=2)
    ax.add_collection(PolyCollection(land, facecolor="#f4f1e8", edgecolor="#555555",
                                     linewidth=0.8, zorder=1))  # fmt: skip
    ax.add_collection(PolyCollection(cell_polys, facecolor="#9fd39f", edgecolor="none",
                                     alpha=0.45, zorder=2))  # fmt: skip
    codes = sorted({c for _, _, c in stations if c})
    colour = {c: COUNTRY_COLOURS[i % len(COUNTRY_COLOURS)] for i, c in enumerate(codes)}
    if exact:
        for la, lo, c in stations:
            ax.scatter([lo], [la], s=30, marker="^", facecolor="none",
                       edgecolor=colour.get(c, "#333333"), linewidth=1.2, zorder=3)  # fmt: skip
        if centres:
            ax.scatter([c[1] for c in centres], [c[0] for c in centres], s=18, color="#222222",
                       zorder=4, label="activity centres")  # fmt: skip
    else:
        by_country: dict[tuple, str] = {}
        for la, lo, c in stations:
            by_country.setdefault(generalise(la, lo), c or "")
        for (la, lo), n in _cells([(s[0], s[1]) for s in stations]).items():
            ax.scatter([lo], [la], s=60, marker="^", facecolor="none",
                       edgecolor=colour.get(by_country[(la, lo)], "#333333"),
                       linewidth=1.4, zorder=3)  # fmt: skip
            ax.annotate(f"{n} st.", (lo, la), xytext=(5, -10), textcoords="offset points",
                        fontsize=7, color="#333333", zorder=3)  # fmt: skip
        for (la, lo), n in _cells(centres).items():
            ax.scatter([lo], [la], s=20 + 12 * n, color="#222222", alpha=0.7, zorder=4)
            ax.annotate(str(n), (lo, la), xytext=(5, 4), textcoords="offset points",
                        fontsize=8, color="#000000", zorder=4)  # fmt: skip
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(1 / max(0.1, np.cos(np.radians((y0 + y1) / 2))))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    note = "exact positions" if exact else f"generalised to {CELL_DEG}° cells"
    ax.set_title(f"{title}\n(triangles: camera stations; dots: activity centres; "
                 f"green: habitat mask; {note})", fontsize=9)  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out
