"""Capture histories in the formats users take to R: secr and camtrapR.

- **secr** (Efford; the text formats of ``read.capthist``, shared with DENSITY): a
  capture file, one detection per line ``Session ID Occasion Detector`` (occasions
  numbered from 1; a count detector's detection is repeated once per count, as secr's
  data-input vignette asks), and a trap file ``Detector x y`` followed by one usage
  (effort) value per occasion, separated by blanks: read it with
  ``read.capthist("capt.txt", "trap.txt", detector = "proximity", binary.usage = FALSE)``.
  Identifiers have no blanks, tabs, commas or underscores (the vignette's rules).
- **camtrapR**: the record table of ``recordTableIndividual`` (``Station, Species,
  DateTimeOriginal, Date, Time, delta.time.*, Directory, FileName, Individual``; times
  are UTC here, as the registry keeps them) and the camera operation matrix of
  ``cameraOperation`` (one row per station, one column per day ``YYYY-MM-DD``: ``NA``
  before the first set-up and after the last retrieval, ``0`` in a gap between
  deployments, else the fraction of the day on which at least one camera worked; read
  it with ``read.csv(..., row.names = 1, check.names = FALSE)``).

**Privacy.** Projected detector coordinates, station codes and activity centres locate
cameras and animals exactly. An export for a reader without the precise-location
permission (``exact=False``) gets what :mod:`reid.privacy` gives everyone else: each
station at the centre of its 0.25° grid cell (then projected), so stations in one cell
share one position, and opaque detector names (``D001``, ...) instead of station codes,
which may spell out places; camera codes, folders and file names are left out for the
same reason. An SCR fit on such coordinates is not meaningful; the
holder of the exact data fits and shares the estimate.
"""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from pathlib import Path

import numpy as np

from reid.privacy import CELL_UNCERTAINTY_M, generalise, opaque_name
from reid.scr.histories import HistoryBuild, projection_for

_BAD = re.compile(r"[\s,_#]+")


def secr_id(text: str) -> str:
    """An identifier secr reads: blanks, tabs, commas, underscores and '#' become '-'."""
    out = _BAD.sub("-", str(text)).strip("-")
    return out or "x"


def detector_order(build: HistoryBuild, exact: bool) -> list[int]:
    """The order detectors are listed and numbered in: the history's own (by station
    code) when exact; generalised, by grid cell and then by a keyed hash of the code, so
    that neither the numbers nor the rows sort stations within a cell by their codes
    (which may spell their places)."""
    if exact:
        return list(range(len(build.stations)))
    cells = station_latlon(build, exact=False)
    return sorted(range(len(build.stations)),
                  key=lambda k: (cells[k], opaque_name("station", build.stations[k].id)))


def detector_names(build: HistoryBuild, exact: bool) -> list[str]:
    """Station codes made secr-safe (exact), or opaque ``D001``... numbered in
    :func:`detector_order` (generalised); indexed as the history's stations."""
    if not exact:
        out = [""] * len(build.stations)
        for rank, k in enumerate(detector_order(build, exact)):
            out[k] = f"D{rank + 1:03d}"
        return out
    names = [secr_id(s.id) for s in build.stations]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def station_latlon(build: HistoryBuild, exact: bool) -> list[tuple[float, float]]:
    """Each station's (lat, lon): exact, or its 0.25° grid cell centre."""
    return [(s.lat, s.lon) if exact else generalise(s.lat, s.lon) for s in build.stations]


def projection(build: HistoryBuild, exact: bool):
    """The history's projection, or for a generalised export one centred on the grid
    cells (the history's own centre is the middle of the exact stations: with the cell
    centres and their projected coordinates a reader could solve for it)."""
    if exact:
        return build.projection
    pts = station_latlon(build, exact=False)
    return projection_for([p[0] for p in pts], [p[1] for p in pts])


def detector_xy(build: HistoryBuild, exact: bool) -> np.ndarray:
    """Projected detector coordinates (metres): exact, or of the grid cell centres."""
    if exact:
        return np.asarray(build.history.detectors.xy)
    pts = station_latlon(build, exact=False)
    return projection(build, False).forward([p[0] for p in pts], [p[1] for p in pts])


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def write_secr(build: HistoryBuild, out_dir: Path, exact: bool, session: str = "survey") -> dict:
    """``capt.txt`` and ``trap.txt`` (see the module text) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ch = build.history
    names = detector_names(build, exact)
    xy = detector_xy(build, exact)
    session = secr_id(session)
    lines = ["# Session ID Occasion Detector"]
    ind_names = [secr_id(i) for i in ch.individuals]
    captures = [(i, s, names[k], int(ch.counts[i, k, s]))
                for i, k, s in zip(*np.nonzero(ch.counts), strict=True)]  # fmt: skip
    if not exact:  # not in station-code order
        captures.sort(key=lambda c: (c[0], c[1], c[2]))
    for i, s, name, n in captures:
        lines.extend([f"{session} {ind_names[i]} {s + 1} {name}"] * n)
    capt = out_dir / "capt.txt"
    capt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    where = "exact" if exact else f"generalised to 0.25 degree cells (+-{CELL_UNCERTAINTY_M} m)"
    tl = [
        f"# Detector x y usage (days active per {build.occasion_days}-day occasion, "
        f"{ch.detectors.n_occasions} occasions from {build.start:%Y-%m-%d});",
        f"# x, y: metres, {projection(build, exact).description}; coordinates {where}",
    ]
    for k in detector_order(build, exact):
        usage = " ".join(_fmt(float(u)) for u in ch.detectors.usage[k])
        tl.append(f"{names[k]} {xy[k, 0]:.1f} {xy[k, 1]:.1f} {usage}")
    trap = out_dir / "trap.txt"
    trap.write_text("\n".join(tl) + "\n", encoding="utf-8")
    rcode = out_dir / "read.R"
    rcode.write_text(
        "library(secr)\n"
        f'ch <- read.capthist("capt.txt", "trap.txt", detector = "{ch.detector_type}", '
        "binary.usage = FALSE)\nsummary(ch)\n",
        encoding="utf-8",
    )
    return {"capture": str(capt), "traps": str(trap), "r": str(rcode)}


RECORD_COLUMNS = [
    "Station", "Camera", "Species", "Individual", "DateTimeOriginal", "Date", "Time",
    "delta.time.secs", "delta.time.mins", "delta.time.hours", "delta.time.days",
    "Directory", "FileName", "Flank", "Country", "Occasion",
]  # fmt: skip


def record_table(build: HistoryBuild, exact: bool) -> list[dict]:
    """camtrapR ``recordTableIndividual`` rows of the detections in the history (one per
    detection, time order; ``delta.time.*``: since the individual's previous record at
    the same station, 0 for the first)."""
    names = detector_names(build, exact)
    by_dep = {d.deployment: d for d in build.deployments}
    rows, previous = [], {}
    for det, k, s in build.used:
        key = (det.individual, k)
        delta = (det.time - previous[key]).total_seconds() if key in previous else 0.0
        previous[key] = det.time
        dep = by_dep.get(det.deployment or "")
        camera = (dep.camera if dep and dep.camera else det.deployment) or ""
        path = Path(det.file_path) if det.file_path else None
        rows.append(
            {
                "Station": names[k],
                "Camera": camera if exact else "",
                "Species": det.species or "",
                "Individual": det.individual,
                "DateTimeOriginal": det.time.strftime("%Y-%m-%d %H:%M:%S"),
                "Date": det.time.strftime("%Y-%m-%d"),
                "Time": det.time.strftime("%H:%M:%S"),
                "delta.time.secs": round(delta, 1),
                "delta.time.mins": round(delta / 60, 1),
                "delta.time.hours": round(delta / 3600, 1),
                "delta.time.days": round(delta / 86400, 1),
                "Directory": str(path.parent) if path and exact else "",
                "FileName": path.name if path and exact else "",
                "Flank": det.side,
                "Country": build.stations[k].country or "",
                "Occasion": s + 1,
            }
        )
    return rows


def camera_operation(build: HistoryBuild) -> tuple[list[str], list[list[str]]]:
    """camtrapR ``cameraOperation``: (day columns, one row of cells per station)."""
    t0, t1 = build.start, build.end
    days = [t0 + timedelta(days=d) for d in range(int((t1 - t0).days))]
    spans: dict[str, list] = {}
    for d in build.deployments:
        spans.setdefault(d.station, []).append((d.start, d.end))
    rows = []
    for st in build.stations:
        mine = sorted(spans.get(st.id, []))
        first, last = min(a for a, _ in mine), max(b for _, b in mine)
        cells = []
        for day in days:
            nxt = day + timedelta(days=1)
            if nxt <= first or day >= last:
                cells.append("NA")
                continue
            # union of working time within the day
            covered, edge = 0.0, day
            for a, b in mine:
                a, b = max(a, edge, day), min(b, nxt)
                if b > a:
                    covered += (b - a).total_seconds()
                    edge = b
            frac = round(covered / 86400, 4)
            cells.append(_fmt(frac))
        rows.append(cells)
    return [d.strftime("%Y-%m-%d") for d in days], rows


def write_camtrapr(build: HistoryBuild, out_dir: Path, exact: bool) -> dict:
    """``recordTable.csv`` and ``cameraOperation.csv`` (and ``CTtable.csv``, the station
    table camtrapR starts from) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = out_dir / "recordTable.csv"
    with rec.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RECORD_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(record_table(build, exact))
    names = detector_names(build, exact)
    days, rows = camera_operation(build)
    op = out_dir / "cameraOperation.csv"
    with op.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["", *days])
        for k in detector_order(build, exact):
            w.writerow([names[k], *rows[k]])
    ct = out_dir / "CTtable.csv"
    latlon = station_latlon(build, exact)
    xy = detector_xy(build, exact)
    with ct.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Station", "x", "y", "lat", "lon", "Country", "Cameras"])
        for k in detector_order(build, exact):
            st = build.stations[k]
            w.writerow([names[k], f"{xy[k, 0]:.1f}", f"{xy[k, 1]:.1f}", f"{latlon[k][0]:.6f}",
                        f"{latlon[k][1]:.6f}", st.country or "",
                        len(st.cameras)])  # fmt: skip
    return {"record_table": str(rec), "camera_operation": str(op), "stations": str(ct)}
