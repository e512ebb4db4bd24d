"""The season report: ``report.html`` (one self-contained page) and ``map.png``.

Sections: summary counts; the season's cross-border movements (consecutive encounters
of one identified individual in two countries, with the distance between the cameras
and the days between) and a map of the camera sites with those movements drawn; one
gallery per identified individual; the proposed new individuals, for review. Thumbnails
are small JPEGs in ``thumbs/`` beside the page. Movements here are *proposed*: they come
from machine matches; the registry records movements of confirmed sightings.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from reid.bulk.cluster import Proposal
from reid.geo import haversine_km

#: Encounters shown per individual or proposal in the galleries.
GALLERY_SIZE = 6
THUMB_WIDTH = 200


@dataclass(frozen=True)
class SeasonMovement:
    """An identified individual seen in one country, then next in another."""

    individual: str
    from_country: str
    from_site: str
    from_time: str
    to_country: str
    to_site: str
    to_time: str
    km: float | None
    days: float
    from_lat: float | None = None
    from_lon: float | None = None
    to_lat: float | None = None
    to_lon: float | None = None


def season_movements(table: list[dict]) -> list[SeasonMovement]:
    """Cross-border movements in the matched encounters (rows of encounters.csv)."""
    by_individual: dict[str, list[dict]] = defaultdict(list)
    for r in table:
        if r["decision"] == "known" and r["individual"] and r["country"] and r["start"]:
            by_individual[r["individual"]].append(r)
    out = []
    for ident in sorted(by_individual):
        seen = sorted(by_individual[ident], key=lambda r: (r["start"], r["encounter"]))
        for a, b in zip(seen, seen[1:], strict=False):
            if a["country"] == b["country"]:
                continue
            pa, pb = _point(a), _point(b)
            km = haversine_km(*pa, *pb) if pa and pb else None
            days = (_time(b["start"]) - _time(a["start"])).total_seconds() / 86400.0
            out.append(
                SeasonMovement(
                    ident,
                    a["country"],
                    a["site"],
                    a["start"],
                    b["country"],
                    b["site"],
                    b["start"],
                    None if km is None else round(km, 2),
                    round(days, 2),
                    *(pa or (None, None)),
                    *(pb or (None, None)),
                )
            )
    return out


def _point(r: dict) -> tuple[float, float] | None:
    return (float(r["lat"]), float(r["lon"])) if r["lat"] and r["lon"] else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def draw_map(table: list[dict], moves: list[SeasonMovement], path: Path) -> Path | None:
    """Camera sites (size: encounters, colour: country) and movement arrows; None when
    no encounter has coordinates."""
    # A bare Figure on the Agg canvas: pyplot's backend (a notebook's inline one) is
    # never touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = [(float(r["lon"]), float(r["lat"]), r["country"]) for r in table if _point(r)]
    if not points:
        return None
    counts = Counter(points)
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    pad = max(0.05, 0.1 * max(max(lons) - min(lons), max(lats) - min(lats)))
    box = (min(lons) - pad, max(lons) + pad, min(lats) - pad, max(lats) + pad)
    _draw_borders(ax, {c for *_, c in points if c}, box)
    colours = {}
    for (lon, lat, country), n in sorted(counts.items()):
        colour = colours.setdefault(country, f"C{len(colours)}")
        ax.scatter(
            lon,
            lat,
            s=12 + 4 * np.sqrt(n),
            c=colour,
            alpha=0.8,
            edgecolors="k",
            linewidths=0.4,
            label=country if list(colours).count(country) else None,
        )
    for m in moves:
        if None in (m.from_lat, m.from_lon, m.to_lat, m.to_lon):
            continue
        ax.annotate(
            "",
            xy=(m.to_lon, m.to_lat),
            xytext=(m.from_lon, m.from_lat),
            arrowprops={"arrowstyle": "->", "color": "crimson", "alpha": 0.5, "lw": 1},
        )
    handles = [
        Line2D([], [], marker="o", ls="", color=c, label=k or "?") for k, c in colours.items()
    ]
    handles.append(Line2D([], [], color="crimson", label="cross-border movement"))
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"camera sites and {len(moves)} cross-border movements")
    ax.set_aspect(1 / max(0.1, np.cos(np.radians(np.mean(lats)))))
    fig.tight_layout()
    fig.savefig(path)
    return path


def _draw_borders(ax, codes: set[str], box) -> None:
    """Country outlines from :func:`reid.geo.countries` where they can be read, clipped
    to a margin around the map's box (``lon0, lon1, lat0, lat1``): a whole country's
    outline has tens of thousands of vertices (Russia's 36,000) that matplotlib would
    draw only to clip them away; the cut edges fall outside the visible area."""
    try:
        from shapely import clip_by_rect

        from reid.geo import countries

        shapes = countries()
    except Exception:  # borders are decoration: a map without them is still right
        return
    margin = 0.25 * max(box[1] - box[0], box[3] - box[2])
    for code in sorted(codes):
        geom = shapes.get(code)
        if geom is None:
            continue
        geom = clip_by_rect(
            geom, box[0] - margin, box[2] - margin, box[1] + margin, box[3] + margin
        )
        for poly in getattr(geom, "geoms", [geom]):
            if poly.geom_type != "Polygon" or poly.is_empty:
                continue
            x, y = poly.exterior.xy
            ax.plot(x, y, color="0.5", lw=0.8)
            ax.fill(x, y, color="0.93", zorder=0)


def write_report(
    run_dir: Path,
    table: list[dict],
    found: list[Proposal],
    model: str,
    thumbnail: Callable[[str], np.ndarray | None] | None = None,
) -> Path:
    """Write ``run_dir/report.html``, ``map.png`` and ``thumbs/``; returns the page."""
    run_dir = Path(run_dir)
    moves = season_movements(table)
    map_png = draw_map(table, moves, run_dir / "map.png")
    thumbs = run_dir / "thumbs"
    by_id = {r["encounter"]: r for r in table}

    def thumb(eid: str) -> str:
        name = hashlib.sha1(eid.encode()).hexdigest()[:16] + ".jpg"
        target = thumbs / name
        if thumbnail is not None and not target.exists():
            image = thumbnail(eid)
            if image is None:
                return ""
            _save_thumb(image, target)
        return f"thumbs/{name}" if target.exists() else ""

    e = html.escape
    known = [r for r in table if r["decision"] == "known"]
    individuals: dict[str, list[dict]] = defaultdict(list)
    for r in known:
        individuals[r["individual"]].append(r)
    counts = Counter(r["decision"] for r in table)
    by_country = Counter(r["country"] or "?" for r in table)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Season report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px}figure{display:inline-block;margin:4px;font-size:11px}"
        "img{display:block}</style></head><body>",
        "<h1>Season report</h1>",
        f"<p>model {e(model)}; generated {e(_now())}</p>",
        "<h2>Summary</h2><table>",
    ]
    summary = [
        ("encounters", len(table)),
        ("frames", sum(int(r["frames"]) for r in table)),
        ("matched to a known individual", counts.get("known", 0)),
        ("known individuals seen", len(individuals)),
        ("encounters of new individuals", counts.get("new", 0)),
        ("proposed new individuals", len(found)),
        ("unreadable encounters", counts.get("unreadable", 0)),
        ("cross-border movements", len(moves)),
        *[(f"encounters in {c}", n) for c, n in sorted(by_country.items())],
    ]
    parts += [f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in summary]
    parts.append("</table>")
    parts.append("<h2>Cross-border movements</h2>")
    if map_png:
        parts.append("<img src='map.png' alt='map of camera sites and movements'>")
    if moves:
        parts.append(
            "<table><tr><th>individual</th><th>from</th><th>to</th><th>km</th><th>days</th></tr>"
        )
        for m in moves:
            parts.append(
                f"<tr><td>{e(m.individual)}</td><td>{e(m.from_country)} {e(m.from_site)} "
                f"{e(m.from_time)}</td><td>{e(m.to_country)} {e(m.to_site)} {e(m.to_time)}</td>"
                f"<td>{'' if m.km is None else m.km}</td><td>{m.days}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No cross-border movement among this season's matches.</p>")
    parts.append("<h2>Identified individuals</h2>")
    for ident in sorted(individuals):
        rows = sorted(individuals[ident], key=lambda r: -float(r["probability"] or 0))
        countries = sorted({r["country"] for r in rows if r["country"]})
        parts.append(f"<h3>{e(ident)} — {len(rows)} encounters {e(', '.join(countries))}</h3>")
        parts += [_figure(thumb(r["encounter"]), r, r["probability"]) for r in rows[:GALLERY_SIZE]]
    parts.append("<h2>Proposed new individuals (for review)</h2>")
    if not found:
        parts.append("<p>None.</p>")
    for p in found:
        sure = "single encounter" if p.probability is None else f"grouping P {p.probability:.2f}"
        parts.append(
            f"<h3>{e(p.id)} — {e(p.species)} {e(p.side)} flank, "
            f"{len(p.encounters)} encounters, {sure}</h3>"
        )
        parts += [
            _figure(thumb(eid), by_id[eid], by_id[eid]["new_probability"])
            for eid in p.encounters[:GALLERY_SIZE]
        ]
    parts.append("</body></html>")
    page = run_dir / "report.html"
    tmp = page.with_name(".report.html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, page)
    return page


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _figure(src: str, r: dict, probability: str) -> str:
    e = html.escape
    img = f"<img src='{e(src)}' width='{THUMB_WIDTH}'>" if src else ""
    return (
        f"<figure>{img}<figcaption>{e(r['encounter'])}<br>{e(r['start'])} "
        f"{e(r['country'])}<br>P {e(str(probability))}</figcaption></figure>"
    )


def _save_thumb(image: np.ndarray, target: Path) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(image)
    im.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
    im.save(target, quality=80)
