"""The one schema for an image in a catalogue, and the validation of each field.

Field parsers raise :class:`ValueError` with a short reason; loaders add the file and
line and re-raise as :class:`reid.errors.ManifestError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pycountry

Side = Literal["left", "right", "unknown"]
SIDES: tuple[str, ...] = ("left", "right", "unknown")

#: Columns of a manifest CSV, in the order they are written.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "individual_id",
    "species",
    "side",
    "captured_at",
    "site",
    "country",
    "lat",
    "lon",
    "camera_id",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "encounter",
)


@dataclass(frozen=True, slots=True)
class BBox:
    """An axis-aligned box in pixels of the full image: top-left corner, width, height."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.w, self.h)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"bbox {values} has a non-finite value")
        if self.x < 0 or self.y < 0:
            raise ValueError(f"bbox origin ({self.x}, {self.y}) is negative")
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"bbox size {self.w}x{self.h} is not positive")

    def as_xyxy(self) -> tuple[int, int, int, int]:
        return (
            round(self.x),
            round(self.y),
            round(self.x + self.w),
            round(self.y + self.h),
        )


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of one animal (or of an unidentified one, ``individual_id=None``).

    ``side`` is the flank shown: left and right flanks of one animal carry different
    patterns and are only ever compared with the same side (``unknown``: either).
    ``captured_at`` is timezone-aware UTC. ``encounter`` groups images taken in one
    sighting (a burst, or the left and right photo of one encounter).
    """

    path: Path
    individual_id: str | None
    species: str
    side: Side = "unknown"
    captured_at: datetime | None = None
    site: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    camera_id: str | None = None
    bbox: BBox | None = None
    encounter: str | None = None
    frame: int | None = field(default=None, compare=False)

    def as_row(self, root: Path | None = None) -> dict[str, str]:
        """The record as manifest CSV cells; ``path`` relative to ``root`` when given."""
        path = self.path
        if root is not None:
            # absolute on both sides: a relative image path (data/x/a.jpg, from the
            # working directory) must still come out relative to the manifest's folder
            try:
                path = Path(os.path.abspath(self.path)).relative_to(os.path.abspath(root))
            except ValueError:
                path = self.path
        b = self.bbox
        return {
            "path": path.as_posix(),
            "individual_id": self.individual_id or "",
            "species": self.species,
            "side": self.side,
            "captured_at": format_timestamp(self.captured_at) if self.captured_at else "",
            "site": self.site or "",
            "country": self.country or "",
            "lat": "" if self.lat is None else f"{self.lat:.6f}",
            "lon": "" if self.lon is None else f"{self.lon:.6f}",
            "camera_id": self.camera_id or "",
            "bbox_x": "" if b is None else format_number(b.x),
            "bbox_y": "" if b is None else format_number(b.y),
            "bbox_w": "" if b is None else format_number(b.w),
            "bbox_h": "" if b is None else format_number(b.h),
            "encounter": self.encounter or "",
        }


def parse_side(value: str) -> Side:
    v = value.strip().lower()
    aliases = {"l": "left", "r": "right", "": "unknown", "u": "unknown", "?": "unknown"}
    v = aliases.get(v, v)
    if v not in SIDES:
        raise ValueError(f"side {value!r} is not one of left, right, unknown")
    return v  # type: ignore[return-value]


def parse_country(value: str) -> str | None:
    v = value.strip().upper()
    if not v:
        return None
    if len(v) != 2 or pycountry.countries.get(alpha_2=v) is None:
        raise ValueError(f"country {value!r} is not an ISO 3166-1 alpha-2 code (e.g. RU, CN, IN)")
    return v


def parse_timestamp(value: str, now: datetime | None = None) -> datetime | None:
    """Parse ISO 8601 with a timezone (``Z`` or an offset) and return it in UTC."""
    v = value.strip()
    if not v:
        return None
    try:
        ts = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"captured_at {value!r} is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None:
        raise ValueError(
            f"captured_at {value!r} has no timezone: write UTC with a Z "
            "(2024-03-01T05:12:00Z) or give the offset (2024-03-01T14:12:00+09:00)"
        )
    ts = ts.astimezone(UTC)
    now = now or datetime.now(UTC)
    if ts > now:
        raise ValueError(f"captured_at {value!r} is in the future")
    return ts


def format_number(value: float) -> str:
    """Shortest text that reads back as exactly ``value``: ``12`` for 12.0, else ``repr``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_coordinates(lat: str, lon: str) -> tuple[float | None, float | None]:
    lat, lon = lat.strip(), lon.strip()
    if not lat and not lon:
        return None, None
    if not lat or not lon:
        raise ValueError("lat and lon must be given together")
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        raise ValueError(f"coordinates ({lat}, {lon}) are not numbers") from None
    if not (-90.0 <= la <= 90.0):
        raise ValueError(f"lat {la} is outside -90..90")
    if not (-180.0 <= lo <= 180.0):
        raise ValueError(f"lon {lo} is outside -180..180")
    return la, lo


def parse_bbox(x: str, y: str, w: str, h: str) -> BBox | None:
    cells = [c.strip() for c in (x, y, w, h)]
    if not any(cells):
        return None
    if not all(cells):
        raise ValueError("bbox_x, bbox_y, bbox_w and bbox_h must be given together")
    try:
        values = [float(c) for c in cells]
    except ValueError:
        raise ValueError(f"bbox {cells} has a value that is not a number") from None
    return BBox(*values)


def parse_species(value: str) -> str:
    v = value.strip().lower()
    if not v:
        raise ValueError("species is empty")
    if not all(c.isalnum() or c in "-_ " for c in v):
        raise ValueError(f"species {value!r} has characters other than letters, digits, - and _")
    return v.replace(" ", "_")
