"""The season's answer written back into Camtrap DP: the input package, individualID filled.

``RUN_DIR/camtrap-dp/`` is a copy of the input package: ``datapackage.json`` and
``deployments.csv`` as they were, ``media.csv`` with each ``filePath`` pointing at the
same image from the new place, and ``observations.csv`` where every matched tiger or
leopard observation has ``individualID`` (the known individual, or the proposed new
individual's ``NEW-...`` id), ``classificationMethod`` = ``machine``, ``classifiedBy``
= the model, and ``classificationProbability`` = the calibrated probability of that
decision, and the tag ``status:proposed`` (a machine match waits for a reviewer; the
registry import, :func:`reid.camtrap.import_package`, reads it). Other rows and columns
are left as they were.

A folder tree, manifest or EXIF source has no package to fill: :func:`write_season_package`
derives one from the season instead, with the same conventions (see there). Either way
``RUN_DIR/camtrap-dp/`` is what ``--registry`` imports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import mimetypes
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from reid.bulk.bursts import Encounter
from reid.bulk.cluster import Proposal
from reid.bulk.sources import Capture, write_csv
from reid.data.manifest import read_text
from reid.data.records import format_timestamp

FILLED = (
    "individualID",
    "classificationMethod",
    "classifiedBy",
    "classificationProbability",
    "observationTags",
)


def _table(path: Path) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(read_text(path, "CSV file"), newline=""))
    return list(reader.fieldnames or []), list(reader)


def write_filled_package(
    package: Path,
    out: Path,
    encounters: list[Encounter],
    results: dict[str, dict],
    proposed: dict[str, Proposal],
    model: str,
) -> Path:
    """Write the filled copy of ``package`` into ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("datapackage.json", "deployments.csv"):
        shutil.copyfile(package / name, out / name)
    header, media = _table(package / "media.csv")
    for row in media:
        path = row.get("filePath", "")
        if path and "://" not in path and not os.path.isabs(path):
            row["filePath"] = Path(
                os.path.relpath(package.resolve() / path, out.resolve())
            ).as_posix()
    write_csv(out / "media.csv", header, media)
    answer: dict[str, tuple[str, str]] = {}
    for enc in encounters:
        got = _answer(results.get(enc.id), proposed.get(enc.id))
        if got is None:
            continue
        for frame in enc.frames:
            if frame.observation and frame.observation not in answer:
                answer[frame.observation] = got
    header, observations = _table(package / "observations.csv")
    header = header + [c for c in FILLED if c not in header]
    for row in observations:
        got = answer.get(row.get("observationID", ""))
        if got is not None:
            _fill(row, got, model)
    write_csv(out / "observations.csv", header, observations)
    return out


def _answer(result: dict | None, proposal: Proposal | None) -> tuple[str, str] | None:
    """(individualID, classificationProbability) of an encounter's result: the known
    individual, or the proposed new one; None when it has neither."""
    if result is None:
        return None
    if result["decision"] == "known":
        return result["individual"], f"{result['probability']:.4f}"
    if proposal is not None:
        return proposal.id, f"{result['new_probability']:.4f}"
    return None


def _fill(row: dict, answer: tuple[str, str], model: str) -> None:
    """Fill an observation row with a machine answer, tagged ``status:proposed``."""
    row["individualID"], row["classificationProbability"] = answer
    row["classificationMethod"] = "machine"
    row["classifiedBy"] = f"bigcat-reid {model}"
    tags = [t.strip() for t in (row.get("observationTags") or "").split("|") if t.strip()]
    tags = [t for t in tags if not t.lower().startswith("status:")] + ["status:proposed"]
    row["observationTags"] = " | ".join(tags)


# --------------------------------------------------------------------------- derived
@dataclass(frozen=True)
class SeasonPackage:
    """What :func:`write_season_package` wrote: the folder (None when nothing could be
    written), its observations (= sightings once imported), and one line per part of the
    season it had to leave out, saying why."""

    path: Path | None
    observations: int
    left_out: tuple[str, ...]


def write_season_package(
    out: Path,
    encounters: list[Encounter],
    results: dict[str, dict],
    proposed: dict[str, Proposal],
    model: str,
    title: str = "bigcat-reid season",
) -> SeasonPackage:
    """Derive a Camtrap DP 1.0 package of a folder, manifest or EXIF season into ``out``.

    - ``deployments.csv``: one per deployment (camera id, else the images' folder) at the
      place its frames carry (the most common coordinates, site as ``locationName``,
      country from the frames, else from the coordinates, as the ``country:`` and
      ``site:`` tags), from its first to its last frame. Coordinates are exact, as the
      source gives them and as in ``encounters.csv``: the run folder is the centre's own,
      and the registry (which needs them) generalises them for viewers without the
      precise-location permission.
    - ``media.csv``: one per dated frame, ``filePath`` relative to ``out``.
    - ``observations.csv``: one per encounter with a decodable frame (a burst is one
      sighting), media-level on its representative frame (the largest crop of an
      unmatched encounter, else its first decodable frame), ``eventID`` the encounter and
      ``eventStart``/``eventEnd`` its first and last frame; the scientific name, the box
      as fractions of the upright image, ``side:`` and filled as in
      :func:`write_filled_package` (``individualID``, machine classification,
      ``status:proposed``). Encounters whose frames all failed to decode get none.

    Camtrap DP requires coordinates and a timestamp, so a deployment without coordinates
    (or whose coordinates lie in no country) and an undated frame are left out, each
    named in :attr:`SeasonPackage.left_out`. Identifiers are prefixed with a fingerprint of
    the season's frames (``3f2a9c01-CN-CH-01b@20240102T030405Z``): stable across runs,
    so importing twice adds nothing, and apart from another season's with the same
    camera or file names. The package is checked against the schemas before returning.
    """
    from reid.camtrap import SCIENTIFIC, _tags, read_package, write_tables

    out = Path(out)
    tag = _season_tag(encounters)
    frames_of: dict[str, list[Capture]] = {}
    for enc in encounters:
        frames_of.setdefault(enc.deployment, []).extend(enc.frames)
    deployments, dep_id, why_not = [], {}, {}
    for dep, frames in sorted(frames_of.items()):
        place, problem = _place(frames)
        if problem:
            why_not[dep] = problem
            continue
        lat, lon, country, site = place
        dated = sorted(f.captured_at for f in frames if f.captured_at is not None)
        dep_id[dep] = _ident(tag, dep)
        deployments.append({
            "deploymentID": dep_id[dep], "locationID": site, "locationName": site,
            "latitude": f"{lat:.6f}", "longitude": f"{lon:.6f}",
            "deploymentStart": format_timestamp(dated[0]),
            "deploymentEnd": format_timestamp(dated[-1]),
            "cameraID": dep, "deploymentTags": _tags({"country": country, "site": site}),
        })  # fmt: skip
    media, media_id = [], {}
    for dep, frames in sorted(frames_of.items()):
        for f in frames:
            if dep not in dep_id or f.captured_at is None:
                continue
            media_id[f.key] = _ident(tag, f.key)
            media.append({
                "mediaID": media_id[f.key], "deploymentID": dep_id[dep],
                "timestamp": format_timestamp(f.captured_at),
                "filePath": Path(os.path.relpath(f.path.resolve(), out.resolve())).as_posix(),
                "filePublic": "false", "fileName": f.path.name,
                "fileMediatype": _mediatype(f.path),
            })  # fmt: skip
    observations = []
    unreadable, undated, placeless = 0, 0, {}
    for enc in encounters:
        r = results.get(enc.id)
        if r is None:
            continue
        if r["decision"] == "unreadable":
            unreadable += 1
            continue
        good = [f for f in enc.frames if f.key not in r["skipped"]]
        usable = [f for f in good if f.key in media_id]
        if not usable:
            if enc.deployment in why_not:
                placeless[enc.deployment] = placeless.get(enc.deployment, 0) + 1
            else:
                undated += 1
            continue
        rep = next((f for f in usable if f.key == r.get("representative")), usable[0])
        box = _fraction_box(rep)
        row = {
            "observationID": _ident(tag, enc.id), "deploymentID": dep_id[enc.deployment],
            "mediaID": media_id[rep.key], "eventID": enc.id,
            "eventStart": format_timestamp(enc.start), "eventEnd": format_timestamp(enc.end),
            "observationLevel": "media", "observationType": "animal",
            "scientificName": SCIENTIFIC[enc.species], "count": 1,
            "observationTags": _tags({"side": enc.side}),
        }  # fmt: skip
        if box is not None:
            row.update(zip(("bboxX", "bboxY", "bboxWidth", "bboxHeight"), box, strict=True))
        answer = _answer(r, proposed.get(enc.id))
        if answer is not None:
            _fill(row, answer, model)
        else:
            row["observationTags"] = _tags({"side": enc.side, "status": "proposed"})
        observations.append(row)
    left_out = [
        f"deployment {dep!r}: {why_not[dep]}; its {placeless.get(dep, 0)} encounters are "
        "not in the package"
        for dep in sorted(why_not)
    ]
    if undated:
        left_out.append(f"{undated} undated encounters (Camtrap DP needs a timestamp)")
    if unreadable:
        left_out.append(f"{unreadable} encounters with no decodable frame (no sighting)")
    if not deployments:
        return SeasonPackage(None, 0, tuple(left_out))
    tables = {"deployments": deployments, "media": media, "observations": observations}
    write_tables(out, tables, name=f"bigcat-reid-season-{tag}", title=title)
    read_package(out)  # a package the registry would refuse is a bug: fail here, loudly
    return SeasonPackage(out, len(observations), tuple(left_out))


def _season_tag(encounters: list[Encounter]) -> str:
    """8 hex digits of SHA-256 over the season's frames (names and times): the same for
    every run of the season whatever the burst gap, another for another season."""
    h = hashlib.sha256()
    for f in sorted((f for e in encounters for f in e.frames), key=lambda f: f.key):
        stamp = format_timestamp(f.captured_at) if f.captured_at else ""
        h.update(f"{f.key}\x00{stamp}\n".encode())
    return h.hexdigest()[:8]


_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def _ident(tag: str, text: str) -> str:
    """``<tag>-<text>``, safe in a URL path (sighting codes are: ``/review/CODE``) and at
    most 128 characters; anything changed is made unique by a hash of ``text``."""
    safe = _UNSAFE.sub("_", text)
    if safe != text or len(safe) > 100:
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        safe = f"{safe[-80:].lstrip('_')}~{digest}"
    return f"{tag}-{safe}"


def _place(frames: list[Capture]) -> tuple[tuple, str | None]:
    """((lat, lon, country, site), None) of a deployment's frames (the most common value
    of each), or ((), why they cannot be a Camtrap DP deployment)."""
    from reid.geo import country_at

    if all(f.captured_at is None for f in frames):
        return (), "no dated frame (Camtrap DP needs the deployment's start and end)"
    coords = Counter((f.lat, f.lon) for f in frames if f.lat is not None and f.lon is not None)
    if not coords:
        return (), (
            "no coordinates (Camtrap DP requires them: lat and lon in the manifest, or GPS "
            "in the images' EXIF)"
        )
    (lat, lon), _ = coords.most_common(1)[0]
    countries = Counter(f.country for f in frames if f.country)
    country = countries.most_common(1)[0][0] if countries else country_at(lat, lon)
    if country is None:
        return (), f"coordinates {lat:.4f}, {lon:.4f} lie in no country and none is given"
    sites = Counter(f.site for f in frames if f.site)
    return (lat, lon, country, sites.most_common(1)[0][0] if sites else None), None


def _fraction_box(capture: Capture) -> tuple[str, str, str, str] | None:
    """A capture's box as Camtrap DP fractions of the upright image, clipped to it; None
    without a box (or when the image size cannot be read)."""
    b = capture.bbox
    if b is None:
        return None
    if capture.bbox_relative:
        w = h = 1.0
    else:
        try:
            with Image.open(capture.path) as im:
                w, h = im.size
                if im.getexif().get(_ORIENTATION) in (5, 6, 7, 8):  # stored turned 90°
                    w, h = h, w
        except Exception:  # the frame decoded for matching; a header quirk only drops the box
            return None
    x0, y0 = max(b.x, 0.0) / w, max(b.y, 0.0) / h
    x1, y1 = min(b.x + b.w, w) / w, min(b.y + b.h, h) / h
    # six decimals, the size rounded down from the rounded corner: x + width never
    # passes the edge after rounding (a reader that checks x + width <= 1 accepts it)
    x0, y0 = round(x0, 6), round(y0, 6)
    bw = math.floor((x1 - x0) * 1e6 + 1e-6) / 1e6
    bh = math.floor((y1 - y0) * 1e6 + 1e-6) / 1e6
    if bw <= 0 or bh <= 0:
        return None
    return tuple(f"{v:.6f}" for v in (x0, y0, bw, bh))  # type: ignore


_ORIENTATION = 0x0112


def _mediatype(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or ""
    return kind if kind.startswith("image/") else "image/jpeg"
