"""What a season run reads: the captures of a folder tree or of a Camtrap DP package.

A :class:`Capture` is one animal in one image: a whole frame, or the crop of an
observation's bounding box. Three kinds of source:

- a folder holding ``manifest.csv`` (the catalogue schema, ``individual_id`` ignored:
  it is what the run finds out); the deployment is ``camera_id``, else the image's folder;
- any other folder tree of images: time and place from each image's EXIF
  (``DateTimeOriginal`` with ``OffsetTimeOriginal``, else ``utc_offset_h``; GPS), the
  deployment is the image's folder (camera-trap software writes one folder per card),
  the species from a folder or file name token (``tiger``, ``leopard``) or ``species``,
  the flank from file-name tokens as in :mod:`reid.data.folders`;
- a Camtrap DP package (a folder with ``datapackage.json``, ``deployments.csv``,
  ``media.csv``, ``observations.csv``), read and checked by :mod:`reid.camtrap`: one
  capture per media-level observation of a tiger or leopard (cropped to its box, which
  Camtrap DP gives as fractions of the image), or per image of an event-level
  observation's event. The flank comes from an observation tag ``side:left`` /
  ``side:right``, the country from a deployment tag ``country:XX``, else from the
  deployment's coordinates.

Captures come back sorted by (deployment, time, id); every problem is one
:class:`~reid.errors.ManifestError` line naming the file and row.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from PIL import Image

from reid.data.folders import IMAGE_SUFFIXES, side_from_name
from reid.data.manifest import read_manifest
from reid.data.records import BBox, parse_country, parse_side
from reid.errors import ManifestError

#: Scientific names (genus species, any subspecies) of the animals a season run matches.
SPECIES_BY_NAME: dict[str, str] = {"panthera tigris": "tiger", "panthera pardus": "leopard"}


@dataclass(frozen=True)
class Capture:
    """One animal in one image, the unit that is embedded.

    ``key`` is unique and stable in its source (the observation id, or the image path
    relative to the source); ``bbox`` is in pixels, or fractions of the image when
    ``bbox_relative`` (Camtrap DP). ``observation`` is the Camtrap DP observation the
    result is written back to.
    """

    key: str
    path: Path
    deployment: str
    captured_at: datetime | None
    species: str
    side: str = "unknown"
    bbox: BBox | None = None
    bbox_relative: bool = False
    site: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    observation: str | None = None
    media: str | None = None


@dataclass(frozen=True)
class Source:
    """A season's captures and where they came from (``kind``: manifest, exif, camtrap)."""

    root: Path
    kind: str
    captures: list[Capture]

    @property
    def camtrap(self) -> bool:
        return self.kind == "camtrap"


def read_source(
    path: Path | str, *, species: str | None = None, utc_offset_h: float = 0.0
) -> Source:
    """Read a season source (see the module text); ``species`` is the species of
    images whose names do not say, ``utc_offset_h`` the cameras' clock offset when EXIF
    has none."""
    root = Path(path)
    if not root.exists():
        raise ManifestError(f"{root}: no such folder")
    if root.is_file():
        if root.name == "datapackage.json":
            root = root.parent
        elif root.suffix.lower() == ".csv":
            return _finish(root.parent, "manifest", _from_manifest(root))
        else:
            raise ManifestError(
                f"{root}: not a season source (a folder of images, a manifest CSV or a "
                "Camtrap DP package folder)"
            )
    if (root / "datapackage.json").is_file():
        return _finish(root, "camtrap", read_camtrap_captures(root))
    if (root / "manifest.csv").is_file():
        return _finish(root, "manifest", _from_manifest(root / "manifest.csv"))
    return _finish(root, "exif", _from_exif(root, species, utc_offset_h))


def _finish(root: Path, kind: str, captures: list[Capture]) -> Source:
    captures = [c for c in captures if c.species in SPECIES_BY_NAME.values()]
    if not captures:
        raise ManifestError(f"{root}: no captures of a tiger or leopard found")
    seen: set[str] = set()
    for c in captures:
        if c.key in seen:
            raise ManifestError(f"{root}: capture {c.key!r} is listed twice")
        seen.add(c.key)
    captures.sort(key=sort_key)
    return Source(root.resolve(), kind, captures)


def sort_key(c: Capture) -> tuple:
    """Captures in (deployment, time, key) order; undated ones last in their deployment."""
    t = c.captured_at.timestamp() if c.captured_at else float("inf")
    return (c.deployment, t, c.key)


# --------------------------------------------------------------------------- manifest
def _from_manifest(path: Path) -> list[Capture]:
    root = path.parent.resolve()
    out = []
    for r in read_manifest(path):
        key = _relative(r.path, root)
        out.append(
            Capture(
                key=key,
                path=r.path,
                deployment=r.camera_id or _relative(r.path.parent, root),
                captured_at=r.captured_at,
                species=r.species,
                side=r.side,
                bbox=r.bbox,
                site=r.site,
                country=r.country,
                lat=r.lat,
                lon=r.lon,
            )
        )
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix() or "."
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- EXIF
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_ORIGINAL, _DATETIME = 36867, 36881, 306


def _from_exif(root: Path, species: str | None, utc_offset_h: float) -> list[Capture]:
    images = sorted(
        p
        for p in root.resolve().rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root.resolve()).parts)
    )
    if not images:
        raise ManifestError(
            f"{root}: no images found (files ending in {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    out = []
    base = root.resolve()
    for image in images:
        rel = image.relative_to(base)
        kind = _species_from_parts(rel.parts) or species
        if kind is None:
            raise ManifestError(
                f"{root}: {rel.as_posix()}: no species in its folder or file name (tiger, "
                "leopard): name it, or give the species of the whole tree"
            )
        when, lat, lon = read_exif(image, utc_offset_h)
        out.append(
            Capture(
                key=rel.as_posix(),
                path=image,
                deployment=rel.parent.as_posix() or ".",
                captured_at=when,
                species=kind,
                side=side_from_name(image.name),
                lat=lat,
                lon=lon,
            )
        )
    return out


def _species_from_parts(parts: tuple[str, ...]) -> str | None:
    for part in reversed(parts):
        tokens = set(part.lower().replace("-", "_").replace(".", "_").split("_"))
        for kind in SPECIES_BY_NAME.values():
            if kind in tokens:
                return kind
    return None


def read_exif(
    path: Path, utc_offset_h: float = 0.0
) -> tuple[datetime | None, float | None, float | None]:
    """(UTC capture time, lat, lon) from an image's EXIF; None where it has none. The
    time is ``DateTimeOriginal`` (else ``DateTime``) at ``OffsetTimeOriginal`` (else
    ``utc_offset_h``)."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
    except Exception as e:  # any unreadable header: named, one line
        raise ManifestError(f"{path}: cannot read the image header: {e}") from None
    sub = exif.get_ifd(_EXIF_IFD)
    raw = sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    when = None
    if raw:
        try:
            local = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            raise ManifestError(f"{path}: EXIF time {raw!r} is not YYYY:MM:DD HH:MM:SS") from None
        offset = _parse_offset(sub.get(_OFFSET_ORIGINAL), utc_offset_h)
        when = local.replace(tzinfo=offset).astimezone(UTC)
    lat = lon = None
    gps = exif.get_ifd(_GPS_IFD)
    if gps.get(2) and gps.get(4):
        lat = _degrees(gps[2]) * (-1 if str(gps.get(1, "N")).upper().startswith("S") else 1)
        lon = _degrees(gps[4]) * (-1 if str(gps.get(3, "E")).upper().startswith("W") else 1)
    return when, lat, lon


def _parse_offset(text, default_h: float) -> timezone:
    if text:
        t = str(text).strip("\x00 ")
        try:
            sign = -1 if t.startswith("-") else 1
            h, m = t.lstrip("+-").split(":")
            return timezone(sign * timedelta(hours=int(h), minutes=int(m)))
        except ValueError:
            pass
    return timezone(timedelta(hours=default_h))


def _degrees(dms) -> float:
    d, m, s = (float(v) for v in dms)
    return d + m / 60.0 + s / 3600.0


# --------------------------------------------------------------------------- Camtrap DP
def read_camtrap_captures(package: Path) -> list[Capture]:
    """The tiger and leopard captures of a Camtrap DP package folder, read and checked
    against the Camtrap DP 1.0 schemas by :func:`reid.camtrap.read_package`."""
    from reid.camtrap import read_package

    package = Path(package)
    _, tables = read_package(package)
    deployments = {d["deploymentID"]: _deployment(d) for d in tables["deployments"]}
    media = {m["mediaID"]: m for m in tables["media"]}
    out: list[Capture] = []
    covered: set[str] = set()
    events = []
    for row in tables["observations"]:
        kind = species_of(row.get("scientificName") or "")
        if kind is None or row.get("observationType") != "animal":
            continue
        where = row.get("_where", "observations.csv")
        side = _side_tag(row.get("observationTags") or "", where)
        if row.get("observationLevel") == "event" or row.get("mediaID") is None:
            events.append((row, kind, side))
            continue
        m = media[row["mediaID"]]
        covered.add(m["mediaID"])
        out.append(
            _capture(
                row["observationID"],
                package,
                m,
                kind,
                side,
                deployments,
                row["observationID"],
                _relative_bbox(row, where),
            )
        )
    for row, kind, side in events:
        start, end = row.get("eventStart"), row.get("eventEnd")
        if start is None or end is None:
            continue
        for mid in sorted(media):
            m = media[mid]
            if m["deploymentID"] != row["deploymentID"] or mid in covered:
                continue
            if m["timestamp"] is not None and start <= m["timestamp"] <= end:
                out.append(
                    _capture(
                        f"{row['observationID']}/{mid}",
                        package,
                        m,
                        kind,
                        side,
                        deployments,
                        row["observationID"],
                        None,
                    )
                )
    return out


def species_of(scientific_name: str) -> str | None:
    """``tiger`` / ``leopard`` for Panthera tigris / pardus (any subspecies), else None."""
    words = scientific_name.strip().lower().split()
    return SPECIES_BY_NAME.get(" ".join(words[:2]))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _capture(key, package, m, kind, side, deployments, oid, bbox) -> Capture:
    site, country, lat, lon = deployments[m["deploymentID"]]
    path = m["filePath"]
    return Capture(
        key=key,
        path=Path(path) if os.path.isabs(path) else package / path,
        deployment=m["deploymentID"],
        captured_at=_utc(m["timestamp"]),
        species=kind,
        side=side,
        bbox=bbox,
        bbox_relative=bbox is not None,
        site=site,
        country=country,
        lat=lat,
        lon=lon,
        observation=oid,
        media=m["mediaID"],
    )


def _deployment(row: dict) -> tuple:
    """(site, country, lat, lon): the country from a ``country:`` deployment tag, else
    from the coordinates (Natural Earth borders)."""
    tags = _tags(row.get("deploymentTags") or "")
    lat, lon = row.get("latitude"), row.get("longitude")
    country = tags.get("country")
    if country:
        try:
            country = parse_country(country)
        except ValueError as e:
            raise ManifestError(f"{row.get('_where', 'deployments.csv')}: {e}") from None
    elif lat is not None and lon is not None:
        from reid.geo import country_at

        country = country_at(lat, lon)
    site = tags.get("site") or row.get("locationName") or row.get("locationID")
    return site, country, lat, lon


def _tags(text: str) -> dict[str, str]:
    """Camtrap DP tag text ``key:value | key:value`` as a dict (keys lower-cased)."""
    out = {}
    for part in text.split("|"):
        key, sep, value = part.strip().partition(":")
        if sep and value.strip():
            out[key.strip().lower()] = value.strip()
    return out


def _side_tag(tags: str, where: str) -> str:
    value = _tags(tags).get("side") or _tags(tags).get("flank")
    if value is None:
        return "unknown"
    try:
        return parse_side(value)
    except ValueError as e:
        raise ManifestError(f"{where}: observationTags: {e}") from None


def _relative_bbox(row: dict, where: str) -> BBox | None:
    cells = [row.get(k) for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight")]
    if all(c is None for c in cells):
        return None
    if any(c is None for c in cells):
        raise ManifestError(f"{where}: bboxX, bboxY, bboxWidth and bboxHeight go together")
    try:
        box = BBox(*(float(c) for c in cells))
    except ValueError as e:
        raise ManifestError(f"{where}: bounding box: {e}") from None
    if box.x + box.w > 1.0001 or box.y + box.h > 1.0001:
        raise ManifestError(
            f"{where}: bounding box {cells} is not within 0..1 (Camtrap DP boxes are "
            "fractions of the image width and height)"
        )
    return box


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    """Write a CSV table atomically (temporary file, fsync, rename)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
