"""The population report: one self-contained HTML page (figures embedded) that a
monitoring centre can hand to its partner across the border.

Sections: the survey (window, stations, occasions, effort, flank), the estimates
(joint SCR, each country's own SCR, their sum, the non-spatial M0 estimate), the
individuals per country and shared across the border, the map, the detections that
could not be used and why, the method and the caveats.

**Privacy.** By default (``exact=False``) the page is for a reader who may not see exact
places: no station code, camera, file path or projected coordinate, and the map is
drawn on the 0.25° grid of :mod:`reid.privacy` (:mod:`reid.scr.popmap`). Density, σ and
counts locate nothing and are shown. ``exact=True`` is for the data holder's own use and
says so at the top of the page.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import UTC, datetime
from pathlib import Path

from reid.privacy import CELL_DEG

e = html.escape


def _ci(pair) -> str:
    if not pair:
        return "–"
    return f"{pair[0]:.2f} – {pair[1]:.2f}"


def _num(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _estimates_figure(a) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [("joint", a.joint)] + sorted(a.transboundary.by_country.items())
    fig = Figure(figsize=(6, 2.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (_, est) in enumerate(rows):
        lo, hi = est.density_ci
        d = est.density_per_100km2
        ax.errorbar([d], [i], xerr=[[d - lo], [hi - d]], fmt="o", color="#333333", capsize=4)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlabel("density per 100 km² (95 % interval)")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _detections_figure(a) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ch = a.history
    per_occ = (ch.counts > 0).sum(axis=(0, 1))
    fig = Figure(figsize=(6, 2.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(range(1, len(per_occ) + 1), per_occ, color="#777777")
    ax.set_xlabel(f"occasion ({a.build.occasion_days} days each)")
    ax.set_ylabel("detections")
    return _png(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _coarse_area(km2: float) -> float:
    """An area to the nearest 100 km² (at least 100): what a reader without the
    precise-location permission is shown of areas drawn around the exact cameras."""
    return max(100.0, round(km2 / 100.0) * 100.0)


def _coarse_km(metres: float) -> float:
    return round(metres / 500.0) * 0.5


def _estimate_row(name: str, est, exact: bool = True) -> list[str]:
    """One estimate's table row. Not ``exact``: the mask area to 100 km², abundance as
    density × that area (so it gives the exact area back no better), σ to 0.5 km."""
    intercept = "g0" if est.detector_type == "proximity" else "λ0"
    value = est.g0 if est.detector_type == "proximity" else est.lambda0
    ci = est.g0_ci if est.detector_type == "proximity" else est.lambda0_ci
    if exact:
        area = est.mask_area_km2
        abundance, abundance_ci = est.abundance, est.abundance_ci
        sigma = f"{est.sigma_m / 1000:.2f} ({_ci(tuple(v / 1000 for v in est.sigma_ci))})"
        area_text = f"{area:.0f}"
    else:
        area = _coarse_area(est.mask_area_km2)
        abundance = est.density_per_100km2 * area / 100.0
        abundance_ci = tuple(v * area / 100.0 for v in est.density_ci)
        sigma = (f"{_coarse_km(est.sigma_m):.1f} "
                 f"({_ci(tuple(_coarse_km(v) for v in est.sigma_ci))})")  # fmt: skip
        area_text = f"about {area:.0f}"
    return [
        e(name), str(est.n_individuals),
        f"{est.density_per_100km2:.2f} ({est.density_se:.2f})", _ci(est.density_ci),
        f"{abundance:.1f} ({_ci(abundance_ci)})",
        sigma,
        f"{intercept} {_num(value, 3)} ({_ci(ci) if ci else '–'})",
        area_text,
    ]  # fmt: skip


def write_report(assessment, out_dir: Path, *, exact: bool = False, title: str = "",
                 species: str | None = None) -> Path:  # fmt: skip
    """Write ``out_dir/population.html`` and ``out_dir/population-map.png``."""
    from reid.scr.popmap import draw_population_map

    a = assessment
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = a.build.summary()
    title = title or f"Population assessment{f' — {species}' if species else ''}"
    map_png = draw_population_map(out_dir / "population-map.png", a, exact, title)
    map_b64 = base64.b64encode(map_png.read_bytes()).decode("ascii")
    tb = a.transboundary
    est_rows = [_estimate_row("joint (all cameras, cross-border identities)", a.joint, exact)]
    for code, est in sorted(tb.by_country.items()):
        est_rows.append(_estimate_row(f"{code} alone", est, exact))
    if tb.by_country:
        total = sum(
            x.abundance if exact else x.density_per_100km2 * _coarse_area(x.mask_area_km2) / 100
            for x in tb.by_country.values()
        )
        est_rows.append([e("sum of the national estimates"), "", "", "", f"{total:.1f}",
                         "", "", ""])  # fmt: skip
    ns = a.nonspatial
    privacy = (
        "<p class='warn'><b>EXACT LOCATIONS.</b> This page shows exact positions of cameras "
        "and animals: for the data holder only. Do not share it; make the shareable version "
        "without <code>--exact</code>.</p>"
        if exact
        else f"<p class='note'>Locations on this page are generalised to {CELL_DEG}° grid "
        "cells (about 28 × 20–28 km) and station codes are left out, as for every reader "
        "without the precise-location permission.</p>"
    )
    summary_rows = [
        [
            "survey window",
            f"{s['start']} to {s['end']} ({s['occasions']} occasions of {s['occasion_days']} days)",
        ],  # fmt: skip
        ["camera stations (detectors)", f"{s['detectors']} ({', '.join(s['countries'])})"],
        ["trap-days (station-days working)", f"{s['trap_days']:.0f}"],
        ["detector type", s["detector_type"]],
        ["flank used", s["flank"]],
        ["individuals detected", str(s["individuals"])],
        ["detections (station-occasions)", str(s["detections"])],
        [
            "individuals known from both flanks / one only",
            f"{s['both_flanks']} / {s['one_flank_only']}",
        ],  # fmt: skip
        [
            "mask",
            f"{a.mask.n_cells} cells of {a.spacing_m / 1000:.1f} km, "
            f"buffer {a.buffer_m / 1000:.0f} km, {a.mask.area_km2:.0f} km²"
            if exact
            else f"cells of {a.spacing_m / 1000:.1f} km, buffer {a.buffer_m / 1000:.0f} km, "
            f"about {_coarse_area(a.mask.area_km2):.0f} km²",
        ],  # fmt: skip
    ]
    country_rows = [[e(c), str(n)] for c, n in sorted(tb.individuals_by_country.items())]
    country_rows.append(["detected in two or more countries", f"<b>{tb.n_shared}</b>"])
    skipped = [[e(r), str(n)] for r, n in sorted(s["skipped"].items())]
    ns_html = (
        _table(
            [
                "model",
                "abundance (SE)",
                "95 % interval",
                "p per occasion",
                "area km²",
                "density /100 km²",
            ],  # fmt: skip
            [
                [
                    e(ns.model),
                    f"{ns.abundance:.1f} ({ns.abundance_se:.1f})",
                    _ci(ns.abundance_ci),
                    f"{ns.p:.3f}",
                    # the area (hull + half the MMDM) measures distances between the
                    # exact cameras, and density gives it back: data holder only
                    _num(ns.area_km2, 0) if exact else "withheld",
                    _num(ns.density_per_100km2) if exact else "withheld",
                ]
            ],
        )  # fmt: skip
        if ns
        else f"<p>not estimated: {e(a.nonspatial_error)}</p>"
    )
    shown = a.warnings if exact else a.shareable_warnings()
    warnings = "".join(f"<li>{e(w)}</li>" for w in shown)
    not_fitted = "".join(f"<li>{e(c)}: {e(why)}</li>" for c, why in tb.not_fitted.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}th{background:#f0f0f0}.warn{background:#fdd;"
        "padding:0.6em}.note{background:#eef;padding:0.6em}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by bigcat-reid.</p>",
        privacy,
        "<h2>Survey</h2>",
        _table(["", ""], [[e(k), e(v)] for k, v in summary_rows]),
        "<h2>Density and abundance</h2>",
        "<p>Spatial capture–recapture (SCR), maximum likelihood, half-normal detection; "
        "density per 100 km² with its standard error, abundance = density × mask area, σ in "
        "km; 95 % intervals.</p>",
        _table(
            [
                "estimate",
                "individuals",
                "density (SE)",
                "95 % interval",
                "abundance in mask (95 %)",
                "σ km (95 %)",
                "detection intercept",
                "mask km²",
            ],
            est_rows,
        ),  # fmt: skip
        f"<img alt='density estimates' src='data:image/png;base64,{_estimates_figure(a)}'>",
        f"<ul>{not_fitted}</ul>" if not_fitted else "",
        "<h3>Non-spatial closed-population estimate (for comparison)</h3>",
        ns_html,
        "<h2>Individuals across the border</h2>",
        _table(["country", "individuals detected"], country_rows),
        "<h2>Map</h2>",
        f"<img alt='map' src='data:image/png;base64,{map_b64}'>",
        "<h2>Detections per occasion</h2>",
        f"<img alt='detections' src='data:image/png;base64,{_detections_figure(a)}'>",
        "<h2>Detections not used</h2>",
        _table(["reason", "detections"], skipped) if skipped else "<p>none</p>",
        f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "",
        "<h2>Method</h2>",
        "<p>Detectors are camera stations (two facing cameras at one station are one "
        "detector). Effort (usage) is the number of days in each occasion on which at least "
        "one camera of the station worked, from the deployments' set-up and retrieval "
        "times and their gaps. Coordinates are projected with "
        f"{e(s['projection'])}. The habitat mask is the cells within the buffer of a "
        "station, on land (Natural Earth borders) or within the given habitat, each "
        "cell's country from the same borders. The joint estimate uses every station and "
        "the cross-border identities; each national estimate uses that country's "
        "stations, the detections there only and the mask cells in that country, as a "
        "separate national survey would. Activity centres are each detected animal's "
        "posterior mean centre under the joint fit.</p>",
        "<h2>Caveats</h2><ul>",
        "<li><b>Flanks.</b> Left and right flanks are different patterns. With both flanks "
        "used, an animal known only from its left flank and one known only from its right "
        "may be the same animal, counted twice; surveys usually use one flank "
        "(<code>--flank left</code>). "
        f"Here {s['one_flank_only']} of {s['individuals']} individuals are known from one "
        "flank only.</li>",
        "<li><b>Identities.</b> The estimate is only as good as the identifications: a "
        "missed match splits one animal into two (density up), a false match joins two "
        "(density down, σ up). Use confirmed identities.</li>",
        "<li><b>Closure.</b> SCR assumes no births, deaths or movement of activity centres "
        "during the survey: keep it to one season (60–100 days for tigers).</li>",
        "<li><b>Sum of national estimates.</b> Two separate national surveys count a shared "
        "animal twice and cut home ranges at the border; the joint estimate does neither.</li>",
        "</ul></body></html>",
    ]
    page = out_dir / "population.html"
    tmp = page.with_name(".population.html.tmp")
    tmp.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    os.replace(tmp, page)
    return page
