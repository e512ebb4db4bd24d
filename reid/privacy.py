"""Who may see where an animal was: exact coordinates or a generalised location.

Exact coordinates of tigers and leopards are what a poacher needs, so a caller sees them
only with the ``precise_location`` permission; everyone else gets every coordinate snapped
to the centre of a 0.25° grid cell, everywhere (queries, CSV/GeoJSON/Camtrap DP exports,
maps). Why that scheme:

- a 0.25° cell is about 28 × 28 km at the equator and 28 × 24 km at 30° N (≈ 600-780
  km²), the size of one tiger home range (≈ 100-1,000 km²) or a leopard's: the
  country, the protected area and the movement pattern between areas stay visible, the
  camera, the waterhole and the trail do not;
- a fixed grid (not random jitter) gives the same answer every time, so repeated
  queries or exports cannot be averaged to recover the point, and two sightings at one
  camera stay together;
- a plain latitude/longitude grid needs no library and every GIS reads it; the
  uncertainty that goes with it is published (``coordinateUncertainty`` in Camtrap DP).

A movement's distance, for a caller who sees either end generalised, is measured between
the ends as that caller sees them (a hidden end at its cell centre) and rounded to 10 km
(:func:`shown_distance_km`). It must not be the recorded distance, rounded or not: a
caller who records sightings of their own chooses one end exactly, and the rounded true
distance flips between two values at a known radius from the hidden point, so bisecting
along three bearings locates a camera to tens of metres (an API probe did, to 58 m, in
39 requests).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import PurePath

from reid.geo import haversine_km

#: A number with two or more decimals (0.01° is about 1 km): a position in a name.
COORDINATE_IN_NAME = re.compile(r"\d[.,]\d{2,}")


def looks_like_coordinates(code: str) -> bool:
    """Whether a site or camera code seems to hold a position (``27.5123_84.2611``,
    ``cam-27,51``): codes are shown to every reader, cleared for exact positions or not."""
    return COORDINATE_IN_NAME.search(code) is not None


#: Broader than :data:`COORDINATE_IN_NAME` (which refuses new codes, and must not refuse
#: names like ``cam-12``): anything a position could be spelt with. A code that matches
#: is shown to a viewer without exact places under an opaque name (:meth:`Viewer.shown_code`);
#: a false alarm only costs that viewer a readable label.
POSITION_HINT = re.compile(
    r"\d[.,]\d"  # a decimal, even of one digit (0.1 degree is 11 km): 27.6, 27,5123
    r"|\d{1,3}\s*[°dD]\s*\d{1,2}\s*['′mM]"  # degrees and minutes: 27°30', 27d30m
    # an integer part and its decimals apart (27_4387, 84-2611), not inside a hex string
    # or a longer number (a date: 2025-01-01, 20240102)
    r"|(?<![\da-f])\d{1,3}[_\- ]\d{3,6}(?!\d)"
)
#: Opaque site codes this package makes (``[ORG:]CC:site-<random>``, the whole code): nothing
#: to hide.
_OPAQUE_SITE = re.compile(r"^(?:[^:]+:)?[A-Z]{2}:site-[0-9a-f]{10}$")
#: Per process: opaque names are stable within one export or one server's life, unlinkable
#: across them, and cannot be searched for without it.
_NAME_KEY = secrets.token_bytes(32)


def may_hold_position(code: str) -> bool:
    """Whether ``code`` might spell a position (:data:`POSITION_HINT`)."""
    return POSITION_HINT.search(code) is not None and not _OPAQUE_SITE.search(code)


def opaque_name(kind: str, code: str) -> str:
    """``<kind>-<8 hex>``: a keyed hash of ``code`` (:data:`_NAME_KEY`), not reversible."""
    digest = hmac.new(_NAME_KEY, f"{kind}\0{code}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}-{digest[:8]}"


#: Grid cell size in degrees for generalised locations.
CELL_DEG = 0.25
#: Half the diagonal of a cell at the equator, in metres: the uncertainty of a generalised point.
CELL_UNCERTAINTY_M = round(math.hypot(CELL_DEG, CELL_DEG) / 2 * 111_320)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: their organisation, roles, and whether they may see exact places."""

    organisation: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    precise_location: bool = False

    def locate(self, lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
        """The coordinates this viewer may see: exact, or the centre of their grid cell."""
        if lat is None or lon is None or self.precise_location:
            return lat, lon
        return generalise(lat, lon)

    def distance_km(
        self, km: float, start: tuple[float, float], end: tuple[float, float]
    ) -> float:
        """The length of a movement this viewer may see: the recorded ``km`` to 0.1 km
        when cleared, else :func:`shown_distance_km` between ``start`` and ``end`` as this
        viewer sees them (:meth:`locate`)."""
        return shown_distance_km(km, start, end, exact=self.precise_location)

    def shown_code(self, code: str | None, kind: str = "site") -> str | None:
        """A site, deployment or camera code as this viewer may see it: as it is when
        cleared for exact places or when it cannot spell a position, else an opaque name
        (:func:`opaque_name`, the same for the same code throughout one process)."""
        if code is None or self.precise_location or not may_hold_position(code):
            return code
        return opaque_name(kind, code)

    def shown_path(self, path: str, media: str) -> str:
        """A photo's file path as this viewer may see it: as it is when cleared, else
        ``media/<media code><suffix>`` (folders and file names may name the place)."""
        if self.precise_location:
            return path
        return f"media/{media}{PurePath(path).suffix}"

    @property
    def uncertainty_m(self) -> int | None:
        """Coordinate uncertainty added by generalisation (None for exact coordinates)."""
        return None if self.precise_location else CELL_UNCERTAINTY_M


#: The command line on one's own machine: a local administrator who sees exact places.
LOCAL_ADMIN = Viewer(organisation=None, roles=frozenset({"admin"}), precise_location=True)
#: Anyone without the permission.
PUBLIC = Viewer()


def shown_distance_km(
    km: float, start: tuple[float, float], end: tuple[float, float], *, exact: bool
) -> float:
    """A movement's length as a caller sees it. ``exact`` (both ends shown exactly): the
    recorded ``km`` to 0.1 km. Otherwise the great-circle distance between ``start`` and
    ``end`` *as shown* (a generalised end is its cell centre), rounded to 10 km: a
    function of what the caller already sees, so it tells nothing more about a hidden end
    (see the module text for why the recorded distance must not be used)."""
    if exact:
        return round(km, 1)
    return float(round(haversine_km(*start, *end) / 10.0) * 10)


def generalise(lat: float, lon: float, cell: float = CELL_DEG) -> tuple[float, float]:
    """The centre of the ``cell``-degree grid cell holding (lat, lon)."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates out of range: {lat}, {lon}")
    row = min(math.floor(lat / cell), math.floor(90 / cell) - 1)
    col = min(math.floor(lon / cell), math.floor(180 / cell) - 1)
    return round((row + 0.5) * cell, 6), round((col + 0.5) * cell, 6)
