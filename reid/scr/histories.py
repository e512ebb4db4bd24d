"""Capture histories from what the project holds: camera deployments and identified animals.

Two inputs make a spatial capture history (:class:`reid.scr.data.CaptureHistory`):

- **Camera deployments** (:class:`CameraDeployment`): where each camera stood and when it
  was working. From a Camtrap DP package or its ``deployments.csv`` (``locationID`` is the
  station: two facing cameras with one ``locationID`` are one detector), from a plain CSV
  (``station, camera, lat, lon, start, end, country``), or from the registry (cameras of
  one site within ``station_radius_m`` of each other are one station). A camera deployed
  twice (a gap for a flood, a stolen camera) is two rows; the gap has no effort.
- **Detections** (:class:`Detection`): an identified animal at a camera at a time. From
  the registry's confirmed sightings (:func:`detections_from_registry`) or a season run's
  encounters (:func:`detections_from_run`).

Stations are the detectors; effort (usage) of a station on an occasion is the number of
days within the occasion on which at least one of its cameras was working (the union of
its cameras' intervals, not their sum: two facing cameras are one detector). Occasions
are ``occasion_days``-day blocks from midnight UTC of the survey's first day.

**Flanks.** The two flanks of an animal are different patterns. An individual the
registry (or the gallery) knows from both flanks is one animal whichever side a camera
saw; an individual known from one flank only may be the same animal as another known
only from the other flank, and then ``flank="both"`` counts it twice (double counting
inflates abundance and density). Camera-trap tiger surveys therefore usually build the
history from one flank (``flank="left"`` or ``"right"``: only detections of that side
count, and an animal is identified by that flank alone); ``"both"`` uses every
detection and is right when stations have two facing cameras and the catalogue links
the flanks. :class:`HistoryBuild` says how many individuals are known from both flanks,
from one only, and how many detections had no side.

Detections that cannot enter the history are reported, never dropped silently:
outside the survey window, at a camera that was not working at that moment, at a
camera or station with no deployment, or of the other flank.

Coordinates are projected to metres with a Lambert azimuthal equal-area projection
centred on the stations (areas, and so densities, are true; distances within a few
hundred km of the centre are off by well under 1 %): with ``pyproj`` when it is
installed (WGS 84 ellipsoid), else the spherical formulas on the authalic sphere (radius
6,371,007 m) written out in :func:`laea_forward`. The projection centre and every
projected coordinate are exact locations of cameras: see :mod:`reid.scr.exports` for
what a reader without the precise-location permission gets.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from reid.errors import ReidError
from reid.scr.data import CaptureHistory, Detectors

FLANKS = ("left", "right", "both")
#: The most occasions a history may have: a closed-population survey is one season, and
#: the fit's cost grows with them (a 1-day occasion for over a year is a mistake).
MAX_OCCASIONS = 400
#: Radius of the authalic sphere of WGS 84 (metres): equal-area on the sphere.
AUTHALIC_RADIUS_M = 6_371_007.2


class HistoryError(ReidError):
    """Deployments or detections that cannot make a capture history."""


@dataclass(frozen=True)
class CameraDeployment:
    """One camera at one station for one working interval (naive UTC)."""

    deployment: str
    station: str
    lat: float
    lon: float
    start: datetime
    end: datetime
    country: str | None = None
    camera: str | None = None
    owner: str | None = None  # organisation owning the site (registry only)


@dataclass(frozen=True)
class Detection:
    """An identified animal seen at a camera (deployment) or station at a time (naive UTC)."""

    individual: str
    time: datetime
    side: str = "unknown"  # left | right | unknown
    deployment: str | None = None
    station: str | None = None
    species: str | None = None
    source: str = ""  # sighting code or encounter id
    file_path: str = ""  # one photo of it (camtrapR record table)
    linked: bool = False  # the catalogue knows this individual from both flanks


@dataclass(frozen=True)
class Station:
    """A detector: its cameras, place (exact) and country."""

    id: str
    lat: float
    lon: float
    country: str | None
    cameras: tuple[str, ...]


@dataclass(frozen=True)
class Projection:
    """Lambert azimuthal equal-area centred at (lat0, lon0): degrees to metres and back."""

    lat0: float
    lon0: float
    method: str = "spherical"  # "pyproj" | "spherical"

    @property
    def description(self) -> str:
        how = ("pyproj, WGS 84 ellipsoid" if self.method == "pyproj"
               else f"spherical, R = {AUTHALIC_RADIUS_M:.1f} m")  # fmt: skip
        return f"Lambert azimuthal equal-area centred on the stations ({how})"

    def forward(self, lat, lon) -> np.ndarray:
        """(n, 2) x, y in metres."""
        lat, lon = np.atleast_1d(np.asarray(lat, float)), np.atleast_1d(np.asarray(lon, float))
        if self.method == "pyproj":
            t = _pyproj_transformer(self.lat0, self.lon0, inverse=False)
            x, y = t.transform(lon, lat)
            return np.column_stack([x, y])
        return laea_forward(lat, lon, self.lat0, self.lon0)

    def inverse(self, xy) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) arrays of (n, 2) metres."""
        xy = np.atleast_2d(np.asarray(xy, float))
        if self.method == "pyproj":
            t = _pyproj_transformer(self.lat0, self.lon0, inverse=True)
            lon, lat = t.transform(xy[:, 0], xy[:, 1])
            return np.asarray(lat), np.asarray(lon)
        return laea_inverse(xy, self.lat0, self.lon0)


def _pyproj_transformer(lat0: float, lon0: float, inverse: bool):
    from pyproj import CRS, Transformer

    laea = CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    a, b = ("EPSG:4326", laea) if not inverse else (laea, "EPSG:4326")
    return Transformer.from_crs(a, b, always_xy=True)


def laea_forward(lat, lon, lat0: float, lon0: float) -> np.ndarray:
    """Spherical Lambert azimuthal equal-area (Snyder 1987, eqs. 24-2 to 24-4): metres."""
    phi, lam = np.radians(lat), np.radians(lon)
    phi0, lam0 = math.radians(lat0), math.radians(lon0)
    cosc = math.sin(phi0) * np.sin(phi) + math.cos(phi0) * np.cos(phi) * np.cos(lam - lam0)
    k = np.sqrt(2.0 / (1.0 + cosc))
    x = AUTHALIC_RADIUS_M * k * np.cos(phi) * np.sin(lam - lam0)
    y = (
        AUTHALIC_RADIUS_M
        * k
        * (math.cos(phi0) * np.sin(phi) - math.sin(phi0) * np.cos(phi) * np.cos(lam - lam0))
    )
    return np.column_stack([x, y])


def laea_inverse(xy, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`laea_forward` (Snyder eqs. 20-14, 24-16): (lat, lon) degrees."""
    x, y = np.asarray(xy, float)[:, 0], np.asarray(xy, float)[:, 1]
    phi0, lam0 = math.radians(lat0), math.radians(lon0)
    rho = np.hypot(x, y)
    c = 2.0 * np.arcsin(np.clip(rho / (2.0 * AUTHALIC_RADIUS_M), -1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(
            rho == 0,
            phi0,
            np.arcsin(np.cos(c) * math.sin(phi0) + y * np.sin(c) * math.cos(phi0) / rho),
        )
        lam = lam0 + np.where(
            rho == 0,
            0.0,
            np.arctan2(
                x * np.sin(c), rho * math.cos(phi0) * np.cos(c) - y * math.sin(phi0) * np.sin(c)
            ),  # fmt: skip
        )
    return np.degrees(phi), (np.degrees(lam) + 180.0) % 360.0 - 180.0


def projection_for(lats: Sequence[float], lons: Sequence[float]) -> Projection:
    """The projection centred on the middle of these points (pyproj when installed)."""
    lat0 = round((min(lats) + max(lats)) / 2, 4)
    lon0 = round((min(lons) + max(lons)) / 2, 4)
    try:
        import pyproj  # noqa: F401

        method = "pyproj"
    except ImportError:
        method = "spherical"
    return Projection(lat0, lon0, method)


# -- reading deployments ---------------------------------------------------------------

#: Accepted column names of a plain deployments CSV (first found wins).
_COLUMNS = {
    "deployment": ("deploymentID", "deployment", "deployment_id"),
    "station": ("locationID", "station", "station_id", "Station", "location"),
    "camera": ("cameraID", "camera", "camera_id", "Camera"),
    "lat": ("latitude", "lat"),
    "lon": ("longitude", "lon", "lng"),
    "start": ("deploymentStart", "start", "setup", "Setup_date"),
    "end": ("deploymentEnd", "end", "retrieval", "Retrieval_date"),
    "country": ("country",),
}


def _utc(text: str, where: str) -> datetime:
    text = (text or "").strip()
    if not text:
        raise HistoryError(f"{where}: missing date")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(f"{where}: {text!r} is not an ISO 8601 date or date-time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _tags(text: str) -> dict[str, str]:
    out = {}
    for part in (text or "").split("|"):
        key, sep, value = part.strip().partition(":")
        if sep and value.strip():
            out[key.strip().lower()] = value.strip()
    return out


def read_deployments(path: Path) -> list[CameraDeployment]:
    """Camera deployments from a Camtrap DP package folder, its ``deployments.csv``, or a
    plain CSV with columns station, camera, lat, lon, start, end (dates or ISO 8601
    date-times; a bare date as ``end`` means the end of that day) and optionally country
    and deploymentID. The country is a ``country:`` deployment tag or column, else from
    the coordinates (Natural Earth borders)."""
    path = Path(path)
    if path.is_dir():
        path = path / "deployments.csv"
    if not path.is_file():
        raise HistoryError(f"{path}: no deployments file")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)

    def column(name: str) -> str | None:
        return next((c for c in _COLUMNS[name] if c in header), None)

    cols = {name: column(name) for name in _COLUMNS}
    for need in ("lat", "lon", "start", "end"):
        if cols[need] is None:
            raise HistoryError(f"{path}: no {need} column (one of {', '.join(_COLUMNS[need])})")
    if cols["station"] is None and cols["deployment"] is None:
        raise HistoryError(f"{path}: needs a station (locationID) or deploymentID column")
    out = []
    for n, row in enumerate(rows, 2):
        where = f"{path.name}:{n}"
        try:
            lat, lon = float(row[cols["lat"]]), float(row[cols["lon"]])
        except (TypeError, ValueError):
            raise HistoryError(f"{where}: latitude/longitude must be numbers") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise HistoryError(f"{where}: coordinates {lat}, {lon} out of range")
        start = _utc(row[cols["start"]], f"{where}: start")
        end_text = row[cols["end"]]
        end = _utc(end_text, f"{where}: end")
        if len(end_text.strip()) == 10:  # a bare date: the camera worked through that day
            end += timedelta(days=1)
        if end <= start:
            raise HistoryError(f"{where}: the deployment ends ({end}) before it starts ({start})")
        tags = _tags(row.get("deploymentTags", ""))
        country = (row.get(cols["country"]) if cols["country"] else None) or tags.get("country")
        if not country:
            from reid.geo import country_at

            country = country_at(lat, lon)
        camera = (row.get(cols["camera"]) or None) if cols["camera"] else None
        station = (row.get(cols["station"]) or "").strip() if cols["station"] else ""
        deployment = (row.get(cols["deployment"]) or "").strip() if cols["deployment"] else ""
        station = station or deployment
        if not station:
            raise HistoryError(f"{where}: no station (locationID) and no deploymentID")
        out.append(
            CameraDeployment(
                deployment=deployment or f"{station}/{camera or ''}/{n}",
                station=station,
                lat=lat,
                lon=lon,
                start=start,
                end=end,
                country=country.upper() if country else None,
                camera=camera,
            )
        )
    if not out:
        raise HistoryError(f"{path}: no deployments")
    return out


def deployments_from_registry(
    session,
    owners: Iterable[str | None] | None = None,
    station_radius_m: float = 50.0,
    undated: list | None = None,
) -> list[CameraDeployment]:
    """The registry's camera deployments (of sites owned by ``owners``; None: all).

    A registry site may hold cameras far apart, so its cameras within
    ``station_radius_m`` of one another (single linkage) are one station, named
    ``<site>`` or ``<site>#2``, ... Deployments without start or end (what a single match
    or a bulk job records) are refused, their effort being unknown, or with ``undated``
    (a list) left out and appended to it."""
    from sqlalchemy import select

    from reid.registry.models import Deployment, Organisation, Site

    q = (
        select(Deployment, Site, Organisation.code)
        .join(Site, Deployment.site_id == Site.id)
        .outerjoin(Organisation, Site.organisation_id == Organisation.id)
        .order_by(Site.code, Deployment.code)
    )
    keep = None if owners is None else set(owners)
    by_site: dict[str, list] = {}
    for dep, site, owner in session.execute(q):
        if keep is not None and owner not in keep:
            continue
        if dep.start is None or dep.end is None:
            if undated is not None:
                undated.append(dep.code)
                continue
            raise HistoryError(
                f"deployment {dep.code} at site {site.code} has no start or end: its effort "
                "is unknown (give the deployments with --deployments)"
            )
        by_site.setdefault(site.code, []).append((dep, site, owner))
    out = []
    for code, deps in by_site.items():
        root = _single_linkage([(d.lat, d.lon) for d, _, _ in deps], station_radius_m)
        names: dict[int, str] = {}
        for i, (dep, site, owner) in enumerate(deps):
            r = root[i]
            names.setdefault(r, code if not names else f"{code}#{len(names) + 1}")
            out.append(
                CameraDeployment(
                    deployment=dep.code, station=names[r], lat=dep.lat, lon=dep.lon,
                    start=dep.start, end=dep.end, country=site.country,
                    camera=dep.camera_id or dep.code, owner=owner,
                )
            )  # fmt: skip
    if not out:
        raise HistoryError("the registry has no camera deployments (to see)")
    return out


def _single_linkage(points: list[tuple[float, float]], radius_m: float) -> list[int]:
    """Cluster label (a representative index) per point: points within ``radius_m`` of
    one another, directly or through others, share one (union-find)."""
    from reid.geo import haversine_km

    parent = list(range(len(points)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if haversine_km(*points[i], *points[j]) * 1000 <= radius_m:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(points))]


# -- reading detections ----------------------------------------------------------------


def detections_from_registry(
    session,
    species: str | None = None,
    owners: Iterable[str | None] | None = None,
    statuses: Sequence[str] = ("confirmed",),
) -> list[Detection]:
    """Sightings with an individual (confirmed ones by default) as detections, at sites
    owned by ``owners`` (None: all). Individuals are keyed by code, or
    ``<organisation>:<code>`` where two organisations use one code; ``linked`` is true for
    an individual with sightings of both flanks in the registry."""
    from sqlalchemy import select

    from reid.registry.models import Deployment, Individual, Media, Organisation, Sighting, Site

    own = Organisation.__table__.alias("own")
    q = (
        select(Sighting, Media, Deployment, Individual, own.c.code, Organisation.code)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .join(Individual, Sighting.individual_id == Individual.id)
        .outerjoin(own, Individual.organisation_id == own.c.id)
        .outerjoin(Organisation, Site.organisation_id == Organisation.id)
        .where(Sighting.status.in_(list(statuses)))
        .order_by(Media.captured_at, Sighting.id)
    )
    if species is not None:
        q = q.where(Sighting.species == species)
    keep = None if owners is None else set(owners)
    rows = [r for r in session.execute(q) if keep is None or r[5] in keep]
    codes: dict[str, set] = {}
    for _, _, _, ind, _, _ in rows:
        codes.setdefault(ind.code, set()).add(ind.id)
    sides: dict[int, set] = {}
    for sig, _, _, ind, _, _ in rows:
        sides.setdefault(ind.id, set()).add(sig.side)
    out = []
    for sig, media, dep, ind, ind_org, _ in rows:
        name = ind.code if len(codes[ind.code]) == 1 else f"{ind_org or '-'}:{ind.code}"
        out.append(
            Detection(
                individual=name, time=media.captured_at, side=sig.side,
                deployment=dep.code, species=sig.species, source=sig.code,
                file_path=media.file_path, linked={"left", "right"} <= sides[ind.id],
            )
        )  # fmt: skip
    return out


def detections_from_run(run_dir: Path, species: str | None = None) -> list[Detection]:
    """A season run's encounters (``encounters.csv``) as detections: an encounter matched
    to a catalogue animal is that animal; one declared new is its proposed new individual
    (``NEW-...``, one flank: the run proposes new individuals per flank), or, when it was
    not grouped with any other, a new animal of its own (``<encounter>``). Encounters
    whose frames could not be read are left out.

    ``linked`` is true for catalogue animals (the gallery knows them from both flanks
    when it holds both; a proposed new individual never is)."""
    path = Path(run_dir) / "encounters.csv"
    if not path.is_file():
        raise HistoryError(f"{run_dir}: no encounters.csv (is it a `reid bulk` run folder?)")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for n, row in enumerate(rows, 2):
        if species is not None and row.get("species") != species:
            continue
        decision = row.get("decision", "")
        if decision == "known" and row.get("individual"):
            ind, linked = row["individual"], True
        elif decision == "new":
            ind, linked = row.get("proposed_individual") or row["encounter"], False
        else:
            continue  # undecodable or undecided
        if not row.get("start"):
            raise HistoryError(f"{path.name}:{n}: encounter {row['encounter']} has no time")
        side = row.get("side") or "unknown"
        if side == "unknown" and row.get("matched_side") in ("left", "right"):
            side = row["matched_side"]
        media = (row.get("media") or "").split("|")
        out.append(
            Detection(
                individual=ind, time=_utc(row["start"], f"{path.name}:{n}: start"), side=side,
                deployment=row.get("deployment") or None, species=row.get("species"),
                source=row["encounter"], file_path=media[0] if media else "", linked=linked,
            )
        )  # fmt: skip
    return out


def read_detections(path: Path, species: str | None = None) -> list[Detection]:
    """Detections from a plain CSV: ``individual, time`` (ISO 8601, UTC if no zone), the
    camera (``camera`` or ``deployment``) or ``station``, and optionally ``side``,
    ``species``, ``linked`` (yes/true: the catalogue knows both flanks of the animal)."""
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"{path}: no detections file")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    for need in ("individual", "time"):
        if need not in header:
            raise HistoryError(f"{path.name}: no {need} column")
    if not {"camera", "deployment", "station"} & set(header):
        raise HistoryError(f"{path.name}: needs a camera, deployment or station column")
    out = []
    for n, row in enumerate(rows, 2):
        where = f"{path.name}:{n}"
        if species is not None and row.get("species") and row["species"] != species:
            continue
        ind = (row.get("individual") or "").strip()
        if not ind:
            raise HistoryError(f"{where}: no individual")
        side = (row.get("side") or "unknown").strip().lower()
        if side not in ("left", "right", "unknown"):
            raise HistoryError(f"{where}: side {side!r} is not left, right or unknown")
        out.append(
            Detection(
                individual=ind, time=_utc(row["time"], f"{where}: time"), side=side,
                deployment=(row.get("deployment") or row.get("camera") or "").strip() or None,
                station=(row.get("station") or "").strip() or None,
                species=row.get("species") or species, source=f"{path.name}:{n}",
                file_path=row.get("file") or "",
                linked=(row.get("linked") or "").strip().lower() in ("yes", "true", "1"),
            )
        )  # fmt: skip
    return out


def write_detections(path: Path, detections: Sequence[Detection]) -> Path:
    """The CSV :func:`read_detections` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["individual", "time", "side", "camera", "species", "linked"])
        for d in detections:
            w.writerow([d.individual, d.time.strftime("%Y-%m-%dT%H:%M:%SZ"), d.side,
                        d.deployment or d.station or "", d.species or "",
                        "yes" if d.linked else "no"])  # fmt: skip
    return path


def write_deployments(path: Path, deployments: Sequence[CameraDeployment]) -> Path:
    """A plain deployments CSV that :func:`read_deployments` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["deploymentID", "station", "camera", "lat", "lon", "start", "end", "country"])
        for d in deployments:
            w.writerow([d.deployment, d.station, d.camera or "", f"{d.lat:.6f}", f"{d.lon:.6f}",
                        d.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        d.end.strftime("%Y-%m-%dT%H:%M:%SZ"), d.country or ""])  # fmt: skip
    return path


def run_deployments(run_dir: Path) -> list[CameraDeployment]:
    """The deployments of a season run: its ``camtrap-dp/deployments.csv``. For a Camtrap
    DP season that is the source package's; for a folder or manifest season it is derived
    from the frames (each camera from its first to its last frame), which understates the
    effort: give the true deployments instead (``--deployments``)."""
    package = Path(run_dir) / "camtrap-dp"
    if not (package / "deployments.csv").is_file():
        raise HistoryError(
            f"{run_dir}: no camtrap-dp/deployments.csv; give the deployments with --deployments"
        )
    return read_deployments(package)


# -- building the history --------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A detection that could not enter the history, and why."""

    detection: Detection
    reason: str


@dataclass
class HistoryBuild:
    """A capture history and everything needed to explain and export it."""

    history: CaptureHistory
    stations: list[Station]
    projection: Projection
    start: datetime  # first occasion starts (midnight UTC)
    occasion_days: int
    flank: str
    used: list[tuple[Detection, int, int]]  # detection, station index, occasion
    skipped: list[Skipped] = field(default_factory=list)
    deployments: list[CameraDeployment] = field(default_factory=list)
    independence_minutes: float = 30.0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.occasion_days * self.history.detectors.n_occasions)

    def flank_summary(self) -> dict[str, int]:
        """Individuals in the history known from both flanks, and known from one only."""
        linked = {d.individual for d, _, _ in self.used if d.linked}
        sides: dict[str, set] = {}
        for d, _, _ in self.used:
            sides.setdefault(d.individual, set()).add(d.side)
        both = {i for i, s in sides.items() if {"left", "right"} <= s} | linked
        one = set(sides) - both
        return {"both_flanks": len(both), "one_flank_only": len(one)}

    def flank_warning(self) -> str | None:
        """The double-counting warning, when both flanks are used and some individuals
        are known from one flank only."""
        one = self.flank_summary()["one_flank_only"]
        if self.flank != "both" or not one:
            return None
        return (
            f"{one} individuals are known from one flank only: with both flanks, an animal "
            "known only by its left and one known only by its right may be one animal "
            "counted twice (use one flank, --flank left, or join the flanks first)"
        )

    def skipped_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.reason] = out.get(s.reason, 0) + 1
        return out

    def summary(self) -> dict:
        ch = self.history
        return {
            "individuals": ch.n_individuals,
            "detections": ch.n_detections,
            "detectors": ch.detectors.n_detectors,
            "occasions": ch.detectors.n_occasions,
            "occasion_days": self.occasion_days,
            "start": self.start.strftime("%Y-%m-%d"),
            "end": self.end.strftime("%Y-%m-%d"),
            "trap_days": round(float(ch.detectors.usage.sum()), 2),
            "detector_type": ch.detector_type,
            "flank": self.flank,
            **self.flank_summary(),
            "countries": list(ch.detectors.countries()),
            "skipped": self.skipped_counts(),
            "projection": self.projection.description,
        }


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _stations(deployments: Sequence[CameraDeployment]) -> list[Station]:
    by: dict[str, list[CameraDeployment]] = {}
    for d in deployments:
        by.setdefault(d.station, []).append(d)
    out = []
    for sid in sorted(by):
        deps = by[sid]
        countries = {d.country for d in deps if d.country}
        if len(countries) > 1:
            raise HistoryError(f"station {sid}: cameras in several countries ({sorted(countries)})")
        out.append(
            Station(
                id=sid,
                lat=float(np.mean([d.lat for d in deps])),
                lon=float(np.mean([d.lon for d in deps])),
                country=next(iter(countries), None),
                cameras=tuple(sorted({d.camera or d.deployment for d in deps})),
            )
        )
    return out


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[list[datetime]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def build_history(
    deployments: Sequence[CameraDeployment],
    detections: Sequence[Detection],
    *,
    occasion_days: int = 1,
    start: datetime | None = None,
    end: datetime | None = None,
    flank: str = "both",
    detector_type: str = "proximity",
    independence_minutes: float = 30.0,
) -> HistoryBuild:
    """The capture history of ``detections`` at the stations of ``deployments``.

    The survey runs from midnight UTC of ``start`` (default: the first deployment's day)
    to ``end`` (default: the last deployment's end), in ``occasion_days``-day occasions
    (the last one may be shorter: its usage says so). ``flank`` picks the detections
    (see the module text). For ``"count"`` detectors, detections of one individual at
    one station closer than ``independence_minutes`` to the previous counted one are
    one event (the camera-trap convention for independent records)."""
    if flank not in FLANKS:
        raise HistoryError(f"flank {flank!r} is not one of {', '.join(FLANKS)}")
    if occasion_days < 1:
        raise HistoryError("occasion days must be at least 1")
    if not deployments:
        raise HistoryError("no camera deployments")
    kinds = sorted({d.species for d in detections if d.species})
    if len(kinds) > 1:
        # one density, sigma and g0 for tigers and leopards together means nothing
        raise HistoryError(
            f"the detections hold several species ({', '.join(kinds)}): a population is "
            "one species; choose one (--species, or species= in the API)"
        )
    stations = _stations(deployments)
    index = {s.id: k for k, s in enumerate(stations)}
    t0 = _day(start if start is not None else min(d.start for d in deployments))
    t1 = end if end is not None else max(d.end for d in deployments)
    if t1 <= t0:
        raise HistoryError(f"the survey ends ({t1}) before it starts ({t0})")
    n_occ = math.ceil((t1 - t0).total_seconds() / 86400 / occasion_days)
    if n_occ > MAX_OCCASIONS:
        raise HistoryError(
            f"the survey from {t0:%Y-%m-%d} to {t1:%Y-%m-%d} has {n_occ} occasions of "
            f"{occasion_days} days; at most {MAX_OCCASIONS}: give --start/--end for one "
            "season or longer occasions"
        )
    step = timedelta(days=occasion_days)
    usage = np.zeros((len(stations), n_occ))
    working: dict[str, list[tuple[datetime, datetime]]] = {}
    for d in deployments:
        working.setdefault(d.station, []).append((max(d.start, t0), min(d.end, t1)))
    for sid, spans in working.items():
        for a, b in _merge([s for s in spans if s[1] > s[0]]):
            s = int((a - t0) / step)
            while s < n_occ:
                lo, hi = t0 + s * step, t0 + (s + 1) * step
                if lo >= b:
                    break
                usage[index[sid], s] += (min(b, hi) - max(a, lo)).total_seconds() / 86400
                s += 1
    usage = np.round(usage, 4)
    by_dep = {d.deployment: d for d in deployments}
    by_camera: dict[str, list[CameraDeployment]] = {}
    for d in deployments:
        if d.camera:
            by_camera.setdefault(d.camera, []).append(d)
    used, skipped = [], []
    for det in sorted(detections, key=lambda d: (d.time, d.source)):
        if flank != "both" and det.side != flank:
            reason = "no flank side" if det.side not in ("left", "right") else "other flank"
            skipped.append(Skipped(det, reason))
            continue
        if det.deployment is not None and det.deployment in by_dep:
            candidates = [by_dep[det.deployment]]
            station = candidates[0].station
        elif det.deployment is not None and det.deployment in by_camera:
            candidates = by_camera[det.deployment]
            station = candidates[0].station
        elif det.station is not None and det.station in index:
            station = det.station
            candidates = [d for d in deployments if d.station == station]
        else:
            skipped.append(Skipped(det, "no deployment for its camera"))
            continue
        if not (t0 <= det.time < t1):
            skipped.append(Skipped(det, "outside the survey window"))
            continue
        if not any(c.start <= det.time <= c.end for c in candidates):
            skipped.append(Skipped(det, "camera not working at that time"))
            continue
        occ = int((det.time - t0) / step)
        if usage[index[station], occ] <= 0:  # pragma: no cover - working implies usage
            skipped.append(Skipped(det, "camera not working at that time"))
            continue
        used.append((det, index[station], occ))
    individuals = sorted({d.individual for d, _, _ in used})
    row = {name: i for i, name in enumerate(individuals)}
    counts = np.zeros((len(individuals), len(stations), n_occ), dtype=np.int64)
    last: dict[tuple[str, int], datetime] = {}
    gap = timedelta(minutes=independence_minutes)
    for det, k, s in used:
        key = (det.individual, k)
        if detector_type == "count" and key in last and det.time - last[key] < gap:
            continue
        last[key] = det.time
        counts[row[det.individual], k, s] += 1
    if detector_type == "proximity":
        counts = np.minimum(counts, 1)
    projection = projection_for([s.lat for s in stations], [s.lon for s in stations])
    xy = projection.forward([s.lat for s in stations], [s.lon for s in stations])
    labels = tuple((t0 + s * step).strftime("%Y-%m-%d") for s in range(n_occ))
    detectors = Detectors(
        ids=tuple(s.id for s in stations), xy=xy, usage=usage,
        country=tuple(s.country for s in stations),
    )  # fmt: skip
    history = CaptureHistory(
        individuals=tuple(individuals), detectors=detectors, counts=counts,
        detector_type=detector_type, occasion_labels=labels,
    )  # fmt: skip
    return HistoryBuild(
        history=history, stations=stations, projection=projection, start=t0,
        occasion_days=occasion_days, flank=flank, used=used, skipped=skipped,
        deployments=list(deployments), independence_minutes=independence_minutes,
    )  # fmt: skip


def shared_individuals(build: HistoryBuild) -> dict:
    """Individuals detected in each country and in two or more (the shared ones)."""
    ch = build.history
    out: dict = {"by_country": {}}
    seen = np.zeros((ch.n_individuals, 0), dtype=bool)
    for c in ch.detectors.countries():
        inside = ch.detected_in(c)
        out["by_country"][c] = int(inside.sum())
        seen = np.column_stack([seen, inside])
    out["in_several_countries"] = int((seen.sum(axis=1) >= 2).sum()) if seen.size else 0
    return out
