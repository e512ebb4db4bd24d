"""Maps for people who would rather look than read: borders, sightings, tracks.

Country borders come from :mod:`reid.geo` (Natural Earth, installed with the package),
drawn with matplotlib (Agg, no display needed) in plain longitude/latitude, which at the
scale of a landscape (a few hundred km) is close enough to true shape. Coordinates are
whatever the viewer may see, so a map made without the precise-location permission shows
grid-cell centres only.
"""

from __future__ import annotations

from pathlib import Path

from reid.movements import MovementView
from reid.registry.services import SightingView


def draw_map(
    out: Path,
    sightings: list[SightingView],
    moves: list[MovementView],
    title: str,
    margin_deg: float = 0.5,
) -> Path:
    """Draw sightings (dots, by individual), movements (arrows) and borders to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from shapely.geometry import box

    from reid.errors import ReidError
    from reid.geo import countries

    points = [(v.lon, v.lat) for v in sightings]
    points += [(m.from_lon, m.from_lat) for m in moves] + [(m.to_lon, m.to_lat) for m in moves]
    if not points:
        raise ReidError("nothing to map: no sightings or movements match")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 0.2)
    pad = max(margin_deg, span * 0.15)
    x0, x1, y0, y1 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    window = box(x0, y0, x1, y1)
    fig, ax = plt.subplots(figsize=(8, 8 * (y1 - y0) / max(x1 - x0, 1e-6) if x1 > x0 else 8))
    ax.set_facecolor("#dcecf5")
    for code, geom in countries().items():
        if not geom.intersects(window):
            continue
        part = geom.intersection(window)
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type != "Polygon":
                continue
            gx, gy = poly.exterior.xy
            ax.fill(gx, gy, facecolor="#f4f1e8", edgecolor="#555555", linewidth=0.8, zorder=1)
        c = part.representative_point()
        ax.annotate(code, (c.x, c.y), color="#777777", fontsize=14, ha="center", zorder=2)
    individuals = sorted({v.individual or "?" for v in sightings})
    cmap = plt.get_cmap("tab10")
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
    plt.close(fig)
    return out
