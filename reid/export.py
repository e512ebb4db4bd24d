"""Sightings and movements as CSV and GeoJSON (points for sightings, lines for movements).

Coordinates are what the :class:`~reid.privacy.Viewer` may see: generalised to a grid cell
for callers without the precise-location permission. GeoJSON follows RFC 7946
(longitude, latitude order; WGS 84).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from reid.movements import MovementView
from reid.registry.services import SightingView

SIGHTING_FIELDS = (
    "code", "individual", "species", "side", "status", "captured_at", "country", "site",
    "protected_area", "lat", "lon", "media", "file_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
)  # fmt: skip
MOVEMENT_FIELDS = tuple(MovementView.__dataclass_fields__)


def sighting_row(view: SightingView) -> dict:
    """One flat, JSON-ready row of a sighting."""
    row = asdict(view)
    box = row.pop("box") or (None, None, None, None)
    row.update(zip(("bbox_x", "bbox_y", "bbox_w", "bbox_h"), box, strict=True))
    row["captured_at"] = view.captured_at.isoformat() + "Z"
    return row


def write_csv(path: Path, sightings: list[SightingView], moves: list[MovementView]) -> list[Path]:
    """Write ``PATH-sightings.csv`` and ``PATH-movements.csv`` (``path`` without suffix)."""
    base = path.with_suffix("")
    out = []
    for suffix, fields, rows in (
        ("sightings", SIGHTING_FIELDS, [sighting_row(v) for v in sightings]),
        ("movements", MOVEMENT_FIELDS, [m.as_dict() for m in moves]),
    ):
        target = base.parent / f"{base.name}-{suffix}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        out.append(target)
    return out


def geojson(sightings: list[SightingView], moves: list[MovementView]) -> dict:
    """A FeatureCollection: a Point per sighting, a LineString per movement."""
    features = []
    for view in sightings:
        props = sighting_row(view)
        lat, lon = props.pop("lat"), props.pop("lon")
        features.append({
            "type": "Feature", "properties": {"kind": "sighting", **props},
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
        })  # fmt: skip
    for m in moves:
        props = m.as_dict()
        line = [[props.pop("from_lon"), props.pop("from_lat")],
                [props.pop("to_lon"), props.pop("to_lat")]]  # fmt: skip
        features.append({
            "type": "Feature", "properties": {"kind": "movement", **props},
            "geometry": {"type": "LineString", "coordinates": line},
        })  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, sightings: list[SightingView], moves: list[MovementView]) -> Path:
    """Write :func:`geojson` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(geojson(sightings, moves), indent=1) + "\n", encoding="utf-8")
    return path
