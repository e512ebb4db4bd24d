"""Camtrap DP 1.0 in and out: deployments, media, observations with individuals and boxes.

A package is ``datapackage.json`` + ``deployments.csv`` + ``media.csv`` +
``observations.csv`` (https://camtrap-dp.tdwg.org, version 1.0). Reading validates every
row against the fields of the 1.0 table schemas used here (required fields, types, enums,
ranges, unique identifiers, references between tables) before anything is written, and
imports in one transaction: an invalid package is refused with ``file:row: field ...``
and nothing is half-imported.

Registry fields that Camtrap DP has no column for travel in its tag columns, as
``key:value`` pairs separated by ``" | "``: deployments carry ``country``, ``site``,
``protectedArea`` and ``organisation`` (``deploymentTags``), observations carry ``side``
and ``status`` (``observationTags``), media carry ``sha256`` (``mediaComments``). A
package from another tool without them still imports: the country comes from the
coordinates (Natural Earth borders), the site from ``locationID``, the side is unknown
and identified observations are confirmed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from reid import __version__
from reid.errors import ReidError
from reid.privacy import Viewer, looks_like_coordinates, may_hold_position, opaque_name
from reid.registry.db import utc
from reid.registry.models import Deployment, Individual, Media, Organisation, Sighting, Site

PROFILE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/camtrap-dp-profile.json"
SCHEMA = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/{}-table-schema.json"
SCIENTIFIC = {"tiger": "Panthera tigris", "leopard": "Panthera pardus"}
SPECIES_OF = {v: k for k, v in SCIENTIFIC.items()}


class CamtrapError(ReidError):
    """A Camtrap DP package is missing a file or has a bad row."""


@dataclass(frozen=True)
class Field:
    """One column of a Camtrap DP table: its type and constraints."""

    name: str
    type: str = "string"  # string | number | integer | datetime | boolean
    required: bool = False
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    unique: bool = False


#: The Camtrap DP 1.0 fields (all of them, in the standard's order) and their constraints.
TABLES: dict[str, tuple[Field, ...]] = {
    "deployments": (
        Field("deploymentID", required=True, unique=True),
        Field("locationID"),
        Field("locationName"),
        Field("latitude", "number", True, minimum=-90, maximum=90),
        Field("longitude", "number", True, minimum=-180, maximum=180),
        Field("coordinateUncertainty", "integer", minimum=1),
        Field("deploymentStart", "datetime", True),
        Field("deploymentEnd", "datetime", True),
        Field("setupBy"),
        Field("cameraID"),
        Field("cameraModel"),
        Field("cameraDelay", "integer", minimum=0),
        Field("cameraHeight", "number", minimum=0),
        Field("cameraDepth", "number", minimum=0),
        Field("cameraTilt", "integer", minimum=-90, maximum=90),
        Field("cameraHeading", "integer", minimum=0, maximum=360),
        Field("detectionDistance", "number", minimum=0),
        Field("timestampIssues", "boolean"),
        Field("baitUse", "boolean"),
        Field("featureType", enum=("roadPaved", "roadDirt", "trailHiking", "trailGame",
                                   "roadUnderpass", "roadOverpass", "roadBridge", "culvert",
                                   "burrow", "nestSite", "carcass", "waterSource",
                                   "fruitingTree")),  # fmt: skip
        Field("habitat"),
        Field("deploymentGroups"),
        Field("deploymentTags"),
        Field("deploymentComments"),
    ),
    "media": (
        Field("mediaID", required=True, unique=True),
        Field("deploymentID", required=True),
        Field("captureMethod", enum=("activityDetection", "timeLapse")),
        Field("timestamp", "datetime", True),
        Field("filePath", required=True),
        Field("filePublic", "boolean", True),
        Field("fileName"),
        Field("fileMediatype", required=True, pattern=r"^(image|video|audio)/.*$"),
        Field("exifData"),
        Field("favorite", "boolean"),
        Field("mediaComments"),
    ),
    "observations": (
        Field("observationID", required=True, unique=True),
        Field("deploymentID", required=True),
        Field("mediaID"),
        Field("eventID"),
        Field("eventStart", "datetime", True),
        Field("eventEnd", "datetime", True),
        Field("observationLevel", required=True, enum=("media", "event")),
        Field("observationType", required=True,
              enum=("animal", "human", "vehicle", "blank", "unknown", "unclassified")),
        Field("cameraSetupType", enum=("setup", "calibration")),
        Field("scientificName"),
        Field("count", "integer", minimum=1),
        Field("lifeStage", enum=("adult", "subadult", "juvenile")),
        Field("sex", enum=("female", "male")),
        Field("behavior"),
        Field("individualID"),
        Field("individualPositionRadius", "number", minimum=0),
        Field("individualPositionAngle", "number", minimum=-90, maximum=90),
        Field("individualSpeed", "number", minimum=0),
        Field("bboxX", "number", minimum=0, maximum=1),
        Field("bboxY", "number", minimum=0, maximum=1),
        Field("bboxWidth", "number", minimum=1e-15, maximum=1),
        Field("bboxHeight", "number", minimum=1e-15, maximum=1),
        Field("classificationMethod", enum=("human", "machine")),
        Field("classifiedBy"),
        Field("classificationTimestamp", "datetime"),
        Field("classificationProbability", "number", minimum=0, maximum=1),
        Field("observationTags"),
        Field("observationComments"),
    ),
}  # fmt: skip


def species_of(scientific_name: str | None) -> str | None:
    """``tiger``/``leopard`` for Panthera tigris/pardus or any subspecies, else None."""
    binomial = " ".join((scientific_name or "").split()[:2]).capitalize()
    return SPECIES_OF.get(binomial)


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def _tags(pairs: dict[str, str | None]) -> str:
    return " | ".join(f"{k}:{v}" for k, v in pairs.items() if v not in (None, ""))


def _parse_tags(text: str) -> dict[str, str]:
    out = {}
    for part in (text or "").split("|"):
        key, sep, value = part.strip().partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


# -- writing -------------------------------------------------------------------------


def write_package(session: Session, out: Path, viewer: Viewer, title: str | None = None) -> Path:
    """Write every deployment, media file and sighting as a Camtrap DP 1.0 package in ``out``.

    Coordinates are generalised for viewers without the precise-location permission (and
    ``coordinateUncertainty`` says by how much); for them, a deployment, site or camera
    code that might spell a position is written as an opaque name (``deployment-<hash>``,
    :meth:`~reid.privacy.Viewer.shown_code`), the same throughout the package, deployments
    are listed by grid cell and then a keyed hash rather than by code, and file paths become
    ``media/<mediaID>.<ext>``.
    """
    out.mkdir(parents=True, exist_ok=True)
    deployments, media_rows, observations = [], [], []
    shown = viewer.shown_code
    rows = session.execute(
        select(Deployment, Site, Organisation)
        .join(Site, Deployment.site_id == Site.id)
        .outerjoin(Organisation, Site.organisation_id == Organisation.id)
        .order_by(Deployment.code)
    ).all()
    if not viewer.precise_location:  # by cell, then a keyed hash: not by code within a cell
        rows.sort(key=lambda row: (viewer.locate(row[0].lat, row[0].lon),
                                   opaque_name("deployment", row[0].code)))  # fmt: skip
    for dep, site, org in rows:
        lat, lon = viewer.locate(dep.lat, dep.lon)
        span = session.execute(
            select(Media.captured_at).where(Media.deployment_id == dep.id)
        ).scalars().all()  # fmt: skip
        start = dep.start or (min(span) if span else datetime(1970, 1, 1))
        end = dep.end or (max(span) if span else start)
        site_code = shown(site.code, "site")
        deployments.append({
            "deploymentID": shown(dep.code, "deployment"),
            "locationID": site_code, "locationName": site_code,
            "latitude": lat, "longitude": lon, "coordinateUncertainty": viewer.uncertainty_m,
            "deploymentStart": _iso(start), "deploymentEnd": _iso(end),
            "cameraID": shown(dep.camera_id, "camera"),
            "deploymentTags": _tags({"country": site.country, "site": site_code,
                                     "protectedArea": site.protected_area,
                                     "organisation": None if org is None else org.code,
                                     "organisationCountry": None if org is None else org.country,
                                     "siteLatitude": None if not viewer.precise_location
                                     else site.lat,
                                     "siteLongitude": None if not viewer.precise_location
                                     else site.lon}),
        })  # fmt: skip
    for media, dep in session.execute(
        select(Media, Deployment)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .order_by(Media.captured_at, Media.code)
    ):
        path = viewer.shown_path(media.file_path, media.code)
        media_rows.append({
            "mediaID": media.code, "deploymentID": shown(dep.code, "deployment"),
            "captureMethod": "activityDetection", "timestamp": _iso(media.captured_at),
            "filePath": path, "filePublic": "false",
            "fileName": Path(path).name, "fileMediatype": media.mediatype,
            "mediaComments": _tags({"sha256": media.sha256}),
        })  # fmt: skip
    for sig, media, dep, ind in session.execute(
        select(Sighting, Media, Deployment, Individual)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .outerjoin(Individual, Sighting.individual_id == Individual.id)
        .order_by(Media.captured_at, Sighting.code)
    ):
        observations.append({
            "observationID": sig.code, "deploymentID": shown(dep.code, "deployment"),
            "mediaID": media.code,
            "eventStart": _iso(media.captured_at), "eventEnd": _iso(media.captured_at),
            "observationLevel": "media", "observationType": "animal",
            "scientificName": SCIENTIFIC[sig.species], "count": 1,
            "sex": None if ind is None else ind.sex,
            "individualID": None if ind is None else ind.code,
            "bboxX": sig.bbox_x, "bboxY": sig.bbox_y,
            "bboxWidth": sig.bbox_w, "bboxHeight": sig.bbox_h,
            "classificationMethod": "human" if sig.status == "confirmed" else "machine",
            "observationTags": _tags({"side": sig.side, "status": sig.status,
                                      "organisation": None if ind is None or
                                      ind.organisation is None else ind.organisation.code}),
        })  # fmt: skip
    tables = {"deployments": deployments, "media": media_rows, "observations": observations}
    return write_tables(
        out, tables, name="bigcat-reid-export", title=title or "bigcat-reid sightings",
        licenses=[{"name": "CC-BY-4.0", "scope": "data"}],
    )  # fmt: skip


def write_tables(
    out: Path,
    tables: dict[str, list[dict]],
    *,
    name: str,
    title: str,
    licenses: list[dict] | None = None,
) -> Path:
    """Write Camtrap DP 1.0 rows (``deployments``, ``media``, ``observations``: dicts keyed
    by field name, None for empty) and their ``datapackage.json`` into ``out``: every
    field of :data:`TABLES` as a column in the standard's order, the descriptor's
    spatial and temporal coverage from the rows. Each file is replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        buf = io.StringIO()
        writer = csv.DictWriter(buf, [fld.name for fld in TABLES[table]])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        _replace(out / f"{table}.csv", buf.getvalue())
    deployments = tables["deployments"]
    days = sorted(str(m["timestamp"])[:10] for m in tables["media"])  # ISO 8601 UTC
    descriptor = {
        "profile": PROFILE,
        "name": name,
        "title": title,
        "created": _iso(datetime.now(UTC).replace(tzinfo=None)),
        "contributors": [{"title": "bigcat-reid", "role": "publisher"}],
        **({"licenses": licenses} if licenses else {}),
        "sources": [{"title": f"bigcat-reid {__version__}"}],
        "project": {
            "title": title,
            "samplingDesign": "opportunistic",
            "captureMethod": ["activityDetection"],
            "individualAnimals": True,
            "observationLevel": ["media"],
        },
        "spatial": _bbox([(d["longitude"], d["latitude"]) for d in deployments]),
        "temporal": {
            "start": days[0] if days else None,
            "end": days[-1] if days else None,
        },
        "taxonomic": [
            {"scientificName": sci, "taxonRank": "species"} for sci in SCIENTIFIC.values()
        ],
        "resources": [
            {
                "name": table,
                "path": f"{table}.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": SCHEMA.format(table),
            }
            for table in TABLES
        ],
    }
    _replace(out / "datapackage.json", json.dumps(descriptor, indent=2) + "\n")
    return out


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _bbox(points: list[tuple[float, float]]) -> dict | None:
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ring = [[min(xs), min(ys)], [max(xs), min(ys)], [max(xs), max(ys)], [min(xs), max(ys)]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


# -- reading -------------------------------------------------------------------------


def _parse_value(f: Field, raw: str, where: str) -> object:
    def bad(why: str) -> CamtrapError:
        return CamtrapError(f"{where}: field '{f.name}': {why}")

    if raw == "":
        if f.required:
            raise bad("is required")
        return None
    value: object = raw
    if f.type == "number":
        try:
            value = float(raw)
        except ValueError:
            raise bad(f"{raw!r} is not a number") from None
    elif f.type == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise bad(f"{raw!r} is not an integer") from None
    elif f.type == "boolean":
        if raw not in ("true", "false", "TRUE", "FALSE", "True", "False", "1", "0"):
            raise bad(f"{raw!r} is not a boolean")
        value = raw.lower() in ("true", "1")
    elif f.type == "datetime":
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise bad(f"{raw!r} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise bad(f"{raw!r} has no time zone (Camtrap DP needs one, e.g. Z)")
        value = moment.astimezone(UTC).replace(tzinfo=None)
    if f.enum is not None and value not in f.enum:
        raise bad(f"{raw!r} is not one of {', '.join(f.enum)}")
    if f.minimum is not None and value < f.minimum:
        raise bad(f"{raw} is below {f.minimum:g}")
    if f.maximum is not None and value > f.maximum:
        raise bad(f"{raw} is above {f.maximum:g}")
    if f.pattern is not None and not re.match(f.pattern, raw):
        raise bad(f"{raw!r} does not match {f.pattern}")
    return value


def read_table(path: Path, name: str) -> list[dict]:
    """Rows of one Camtrap DP table, parsed and checked against its 1.0 schema."""
    fields = {f.name: f for f in TABLES[name]}
    if not path.is_file():
        raise CamtrapError(f"{path}: missing ({name} table)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        unknown = [h for h in header if h not in fields]
        if unknown:
            raise CamtrapError(f"{path.name}:1: field '{unknown[0]}' is not in Camtrap DP 1.0")
        missing = [n for n, fl in fields.items() if fl.required and n not in header]
        if missing:
            raise CamtrapError(f"{path.name}:1: field '{missing[0]}' is required but absent")
        rows, seen = [], {n: {} for n, fl in fields.items() if fl.unique}
        for line, raw in enumerate(reader, start=2):
            where = f"{path.name}:{line}"
            if None in raw:
                raise CamtrapError(f"{where}: more values than header fields")
            row = {k: _parse_value(fields[k], (v or "").strip(), where) for k, v in raw.items()}
            for key, values in seen.items():
                if row.get(key) in values:
                    raise CamtrapError(
                        f"{where}: field '{key}': {row[key]!r} repeats line {values[row[key]]}"
                    )
                values[row[key]] = line
            row["_where"] = where
            rows.append(row)
    return rows


@dataclass(frozen=True)
class ImportStats:
    """How many records an import added (existing identifiers are left as they are)."""

    deployments: int
    media: int
    sightings: int
    individuals: int
    #: Sites whose code looked like coordinates, stored under an opaque code instead.
    renamed_sites: int = 0


def read_package(path: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The descriptor and the checked rows of the package at ``path`` (folder or json)."""
    folder = path.parent if path.name == "datapackage.json" else path
    descriptor_path = folder / "datapackage.json"
    if not descriptor_path.is_file():
        raise CamtrapError(f"{descriptor_path}: missing (not a Camtrap DP package)")
    try:
        descriptor = json.loads(descriptor_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CamtrapError(f"{descriptor_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    paths = {r.get("name"): r.get("path") for r in descriptor.get("resources", [])}
    tables = {}
    for name in TABLES:
        rel = paths.get(name)
        if not isinstance(rel, str):
            raise CamtrapError(f"{descriptor_path}: resources: no '{name}' resource")
        tables[name] = read_table(folder / rel, name)
    deps = {r["deploymentID"]: r for r in tables["deployments"]}
    media = {r["mediaID"]: r for r in tables["media"]}
    for r in tables["media"]:
        if r["deploymentID"] not in deps:
            raise CamtrapError(
                f"{r['_where']}: field 'deploymentID': {r['deploymentID']!r} "
                "is not in deployments.csv"
            )
    for r in tables["observations"]:
        if r["deploymentID"] not in deps:
            raise CamtrapError(
                f"{r['_where']}: field 'deploymentID': {r['deploymentID']!r} "
                "is not in deployments.csv"
            )
        if r["mediaID"] is not None and r["mediaID"] not in media:
            raise CamtrapError(
                f"{r['_where']}: field 'mediaID': {r['mediaID']!r} is not in media.csv"
            )
    return descriptor, tables


def _media_location(root: Path, file_path: str) -> str:
    """Where the registry finds a media file: a relative ``filePath`` that exists beside
    the package becomes an absolute path (so the review page and thumbnails can open it,
    and its SHA-256 is taken); URLs and files that are not there are kept as written."""
    if "://" in file_path or Path(file_path).is_absolute():
        return file_path
    local = root / file_path
    return str(local.resolve()) if local.is_file() else file_path


def import_package(
    session: Session,
    path: Path,
    decided_by: str,
    country_of: Callable[[float, float], str | None] | None = None,
    skip: Collection[str] = (),
) -> ImportStats:
    """Validate the whole package, then add what it holds to the registry.

    Only animal observations of tigers and leopards on a media file become sightings;
    others, and the observations whose IDs are in ``skip`` (e.g. images that could not
    be decoded), are counted out. Identifiers already in the registry are kept
    (re-importing a package adds nothing). The caller's transaction makes it
    all-or-nothing.
    """
    from reid.registry import services as sv

    _descriptor, tables = read_package(path)
    if country_of is None:
        from reid.geo import country_at as country_of
    n = {"deployments": 0, "media": 0, "sightings": 0, "individuals": 0}
    renamed: set[str] = set()
    dep_of: dict[str, Deployment] = {}
    for r in tables["deployments"]:
        tags = _parse_tags(r.get("deploymentTags") or "")
        try:
            country = tags.get("country") or country_of(r["latitude"], r["longitude"])
            if country is None:
                raise ReidError("no country tag and the coordinates are in no country")
            org = None
            if tags.get("organisation"):
                org = sv.ensure_organisation(
                    session, tags["organisation"], tags.get("organisationCountry") or country
                )
            site_code = tags.get("site") or r.get("locationID") or r["deploymentID"]
            site_lat = float(tags.get("siteLatitude", r["latitude"]))
            site_lon = float(tags.get("siteLongitude", r["longitude"]))
            if looks_like_coordinates(site_code):  # site codes reach every reader
                renamed.add(site_code)
                site = sv.site_at_place(session, org, country, site_lat, site_lon,
                                        tags.get("protectedArea"), opaque_only=True)
            else:
                site = sv.ensure_site(session, site_code, country, site_lat, site_lon,
                                      tags.get("protectedArea"), org)  # fmt: skip
            code = r["deploymentID"]
            existing = session.scalar(select(Deployment).where(Deployment.code == code))
            dep_of[r["deploymentID"]] = existing or sv.ensure_deployment(
                session, r["deploymentID"], site, r["latitude"], r["longitude"],
                r.get("cameraID"), r["deploymentStart"], r["deploymentEnd"],
            )  # fmt: skip
            n["deployments"] += existing is None
        except ReidError as e:
            raise CamtrapError(f"{r['_where']}: {e}") from None
    media_of: dict[str, Media] = {}
    root = Path(path)
    root = root.parent if root.is_file() else root
    for r in tables["media"]:
        # an ID made from a folder name (e.g. reid bulk's) may spell the camera's place:
        # such a photo gets a random code, found again on a re-import by where it is kept
        opaque = may_hold_position(r["mediaID"])
        where = _media_location(root, r["filePath"])
        if opaque:
            existing = session.scalar(select(Media).where(
                Media.deployment_id == dep_of[r["deploymentID"]].id,
                Media.captured_at == utc(r["timestamp"]), Media.file_path == str(where)))
        else:
            existing = session.scalar(select(Media).where(Media.code == r["mediaID"]))
        if existing is None:
            sha = _parse_tags(r.get("mediaComments") or "").get("sha256")
            existing = sv.add_media(
                session, dep_of[r["deploymentID"]], where, r["timestamp"],
                sha256=sha or None, code=None if opaque else r["mediaID"],
                mediatype=r["fileMediatype"],
            )  # fmt: skip
            n["media"] += 1
        media_of[r["mediaID"]] = existing
    for r in tables["observations"]:
        species = species_of(r.get("scientificName"))
        if r["observationType"] != "animal" or species is None or r["mediaID"] is None:
            continue
        if r["observationID"] in skip:
            continue
        tags = _parse_tags(r.get("observationTags") or "")
        opaque = may_hold_position(r["observationID"])  # as media IDs above
        if opaque:
            if session.scalar(select(Sighting.id).where(
                    Sighting.media_id == media_of[r["mediaID"]].id, Sighting.species == species,
                    Sighting.side == tags.get("side", "unknown"))):  # fmt: skip
                continue
        elif session.scalar(select(Sighting.id).where(Sighting.code == r["observationID"])):
            continue
        try:
            ind = None
            if r.get("individualID"):
                ind = sv.find_individual(session, r["individualID"], tags.get("organisation"))
                if ind is None:
                    org = None
                    if tags.get("organisation"):
                        org = session.scalar(
                            select(Organisation).where(Organisation.code == tags["organisation"])
                        )
                    ind = sv.add_individual(session, r["individualID"], species, r.get("sex"), org)
                    n["individuals"] += 1
                elif ind.sex is None and r.get("sex"):
                    ind.sex = r["sex"]
            status = tags.get("status") or ("confirmed" if ind is not None else "proposed")
            box = (r.get("bboxX"), r.get("bboxY"), r.get("bboxWidth"), r.get("bboxHeight"))
            if all(v is None for v in box):
                box = None
            elif any(v is None for v in box):
                raise ReidError("field 'bboxX': a box needs bboxX, bboxY, bboxWidth and bboxHeight")
            sv.add_sighting(
                session, media_of[r["mediaID"]], species, side=tags.get("side", "unknown"),
                box=box, individual=ind, status=status, decided_by=decided_by,
                reason=f"imported from Camtrap DP ({r.get('classifiedBy') or 'unknown'})",
                code=None if opaque else r["observationID"],
            )  # fmt: skip
        except ReidError as e:
            raise CamtrapError(f"{r['_where']}: {e}") from None
        n["sightings"] += 1
    return ImportStats(**n, renamed_sites=len(renamed))
