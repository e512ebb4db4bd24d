"""Cross-border movements: consecutive confirmed sightings of one animal in two countries.

For every individual, its confirmed sightings ordered by capture time (then by id, so
that ties are broken the same way every time) are compared pairwise with SQL's ``LAG``
window; where the country changes, a movement is recorded: from country/site/time, to
country/site/time, great-circle distance between the two cameras and days between.

Derivation is incremental and idempotent: the registry marks an individual stale
whenever one of its sightings is added, confirmed, rejected, re-assigned, merged or
split; :func:`derive_movements` deletes and recomputes the movements of exactly the stale
individuals (all of them with ``full=True``) in one transaction, then refreshes their
first/last seen times. Recomputing gives the same rows; a corrected sighting updates the
movements that depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, true, update
from sqlalchemy.orm import Session, aliased

from reid.geo import haversine_km
from reid.privacy import Viewer
from reid.registry.db import utc
from reid.registry.models import (
    Deployment,
    Individual,
    Media,
    Movement,
    Organisation,
    Sighting,
    Site,
)
from reid.registry.services import check_country

_BATCH = 10_000


@dataclass(frozen=True)
class DeriveStats:
    """What one derivation did."""

    individuals: int
    movements: int


def crossings(
    stale_only: bool = False,
    where: Iterable = (),
    individual_id: int | None = None,
    places: bool = False,
):
    """The registry's one derivation of cross-border movements, as a subquery: each
    confirmed sighting whose individual's previous one (SQL ``LAG`` over the individual's
    sightings by capture time, then id) is in another country. Columns ``individual_id``,
    ``sighting_id``, ``captured_at``, ``country`` and their ``prev_`` twins; with
    ``places`` also ``site_id``, ``lat`` and ``lon`` (the camera's), carried through the
    window (cheaper than joining them back when most crossings are wanted, as in a
    derivation; :func:`with_places` joins them for a few).

    ``where``: further conditions on the sightings taken into the window (a reader's
    visibility, say, over :class:`~reid.registry.models.Site`: the previous sighting is
    then the previous one *that reader may see*, so a crossing between two visible
    sightings is found whatever lies between them)."""
    order = (Media.captured_at, Sighting.id)
    part = Sighting.individual_id
    carried = [
        ("sighting_id", Sighting.id),
        ("captured_at", Media.captured_at),
        ("country", Site.country),
    ]
    if places:
        carried += [("site_id", Site.id), ("lat", Deployment.lat), ("lon", Deployment.lon)]
    base = (
        select(
            Sighting.individual_id,
            *[col.label(name) for name, col in carried],
            *[
                func.lag(col, type_=col.type)
                .over(partition_by=part, order_by=order)
                .label(f"prev_{name}")
                for name, col in carried
            ],
        )
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .where(Sighting.status == "confirmed", Sighting.individual_id.is_not(None), *where)
    )
    if stale_only:
        stale = select(Individual.id).where(Individual.stale == true())
        base = base.where(Sighting.individual_id.in_(stale))
    if individual_id is not None:
        base = base.where(Sighting.individual_id == individual_id)
    rows = base.subquery()
    return (
        select(rows)
        .where(rows.c.prev_country.is_not(None), rows.c.prev_country != rows.c.country)
        .subquery()
    )


def with_places(moves):
    """Select :func:`crossings` ``moves`` (without ``places``) with each end's place,
    joined by key: ``lat`` and ``lon`` (the camera's), ``site_code``, ``owner`` (the
    site owner's organisation code; none for an unowned site) and their ``prev_`` twins,
    and the individual's ``individual_code`` and ``species``."""
    columns = [*moves.c, Individual.code.label("individual_code"), Individual.species]
    query = (
        select(*columns)
        .select_from(moves)
        .join(Individual, Individual.id == moves.c.individual_id)
    )
    for prefix, sighting_id in (("prev_", moves.c.prev_sighting_id), ("", moves.c.sighting_id)):
        sig, media, dep, site, org = (
            aliased(m) for m in (Sighting, Media, Deployment, Site, Organisation)
        )
        query = (
            query.add_columns(dep.lat.label(f"{prefix}lat"), dep.lon.label(f"{prefix}lon"),
                              site.code.label(f"{prefix}site_code"),
                              org.code.label(f"{prefix}owner"))
            .join(sig, sig.id == sighting_id)
            .join(media, media.id == sig.media_id)
            .join(dep, dep.id == media.deployment_id)
            .join(site, site.id == dep.site_id)
            .outerjoin(org, org.id == site.organisation_id)
        )  # fmt: skip
    return query


def derive_movements(session: Session, full: bool = False) -> DeriveStats:
    """Recompute the movements (and first/last seen) of stale individuals, or of all."""
    stale_filter = true() if full else Individual.stale == true()
    n_individuals = session.scalar(select(func.count()).where(stale_filter).select_from(Individual))
    if not n_individuals:
        return DeriveStats(0, 0)
    if full:
        session.execute(delete(Movement))
    else:
        stale = select(Individual.id).where(Individual.stale == true())
        session.execute(delete(Movement).where(Movement.individual_id.in_(stale)))
    query = select(crossings(stale_only=not full, places=True))
    n_movements = 0
    batch: list[dict] = []
    for r in session.execute(query).mappings():
        batch.append(
            {
                "individual_id": r["individual_id"],
                "from_sighting_id": r["prev_sighting_id"],
                "to_sighting_id": r["sighting_id"],
                "from_country": r["prev_country"],
                "to_country": r["country"],
                "from_site_id": r["prev_site_id"],
                "to_site_id": r["site_id"],
                "from_time": r["prev_captured_at"],
                "to_time": r["captured_at"],
                "distance_km": haversine_km(r["prev_lat"], r["prev_lon"], r["lat"], r["lon"]),
                "days": (r["captured_at"] - r["prev_captured_at"]).total_seconds() / 86400.0,
            }
        )
        if len(batch) >= _BATCH:
            n_movements += _flush(session, batch)
    n_movements += _flush(session, batch)
    _refresh_seen(session, stale_filter)
    session.execute(update(Individual).where(stale_filter).values(stale=False))
    return DeriveStats(int(n_individuals), n_movements)


def _flush(session: Session, batch: list[dict]) -> int:
    n = len(batch)
    if batch:
        session.execute(insert(Movement), batch)
        batch.clear()
    return n


def _refresh_seen(session: Session, stale_filter) -> None:
    """first_seen/last_seen from confirmed sightings, for the individuals being derived."""
    seen = (
        select(
            Sighting.individual_id.label("iid"),
            func.min(Media.captured_at).label("first"),
            func.max(Media.captured_at).label("last"),
        )
        .join(Media, Sighting.media_id == Media.id)
        .where(
            Sighting.status == "confirmed",
            Sighting.individual_id.in_(select(Individual.id).where(stale_filter)),
        )
        .group_by(Sighting.individual_id)
        .subquery()
    )
    session.execute(
        update(Individual)
        .where(stale_filter)
        .values(
            first_seen=select(seen.c.first).where(seen.c.iid == Individual.id).scalar_subquery(),
            last_seen=select(seen.c.last).where(seen.c.iid == Individual.id).scalar_subquery(),
        )
    )


# -- queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class MovementView:
    """A movement as a caller may see it (generalised coordinates unless cleared)."""

    individual: str
    species: str
    from_country: str
    from_site: str
    from_time: datetime
    from_lat: float
    from_lon: float
    to_country: str
    to_site: str
    to_time: datetime
    to_lat: float
    to_lon: float
    distance_km: float
    days: float

    def as_dict(self) -> dict:
        """JSON-ready fields (times as ISO 8601 UTC with ``Z``)."""
        out = dict(self.__dict__)
        for key in ("from_time", "to_time"):
            out[key] = self.__dict__[key].isoformat() + "Z"
        return out


def movements(
    session: Session,
    viewer: Viewer,
    *,
    from_country: str | None = None,
    to_country: str | None = None,
    since: datetime | None = None,
    individual: str | Individual | None = None,
) -> list[MovementView]:
    """Recorded movements, oldest arrival first, filtered by country pair, date, individual."""
    from_site, to_site = aliased(Site), aliased(Site)
    from_sig, to_sig = aliased(Sighting), aliased(Sighting)
    from_media, to_media = aliased(Media), aliased(Media)
    from_dep, to_dep = aliased(Deployment), aliased(Deployment)
    query = (
        select(Movement, Individual.code, Individual.species, from_site.code, to_site.code,
               from_dep.lat, from_dep.lon, to_dep.lat, to_dep.lon)
        .join(Individual, Movement.individual_id == Individual.id)
        .join(from_site, Movement.from_site_id == from_site.id)
        .join(to_site, Movement.to_site_id == to_site.id)
        .join(from_sig, Movement.from_sighting_id == from_sig.id)
        .join(from_media, from_sig.media_id == from_media.id)
        .join(from_dep, from_media.deployment_id == from_dep.id)
        .join(to_sig, Movement.to_sighting_id == to_sig.id)
        .join(to_media, to_sig.media_id == to_media.id)
        .join(to_dep, to_media.deployment_id == to_dep.id)
        .order_by(Movement.to_time, Movement.id)
    )  # fmt: skip
    if from_country is not None:
        query = query.where(Movement.from_country == check_country(from_country))
    if to_country is not None:
        query = query.where(Movement.to_country == check_country(to_country))
    if since is not None:
        query = query.where(Movement.to_time >= utc(since))
    if individual is not None:
        from reid.registry.services import get_individual

        if not isinstance(individual, Individual):
            individual = get_individual(session, individual)
        query = query.where(Movement.individual_id == individual.id)
    out = []
    for m, code, species, fsite, tsite, flat, flon, tlat, tlon in session.execute(query):
        flat, flon = viewer.locate(flat, flon)
        tlat, tlon = viewer.locate(tlat, tlon)
        out.append(
            MovementView(
                individual=code, species=species,
                from_country=m.from_country, from_site=viewer.shown_code(fsite),
                from_time=m.from_time,
                from_lat=flat, from_lon=flon,
                to_country=m.to_country, to_site=viewer.shown_code(tsite), to_time=m.to_time,
                to_lat=tlat, to_lon=tlon,
                distance_km=viewer.distance_km(m.distance_km, (flat, flon), (tlat, tlon)),
                days=round(m.days, 3),
            )
        )  # fmt: skip
    return out


def transboundary_individuals(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, list[str]]:
    """``{individual code: sorted countries}`` for those confirmed in two or more countries."""
    query = (
        select(Individual.code, Site.country)
        .join(Sighting, Sighting.individual_id == Individual.id)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .where(Sighting.status == "confirmed")
        .distinct()
    )
    query = _period(query, since, until)
    countries: dict[str, set[str]] = {}
    for code, country in session.execute(query):
        countries.setdefault(code, set()).add(country)
    return {c: sorted(v) for c, v in sorted(countries.items()) if len(v) > 1}


def country_presence(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Per country: how many individuals and confirmed sightings in [since, until)."""
    query = (
        select(
            Site.country,
            func.count(func.distinct(Sighting.individual_id)),
            func.count(Sighting.id),
        )
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .where(Sighting.status == "confirmed")
        .group_by(Site.country)
        .order_by(Site.country)
    )
    query = _period(query, since, until)
    return {c: {"individuals": i, "sightings": s} for c, i, s in session.execute(query)}


def _period(query, since: datetime | None, until: datetime | None):
    if since is not None:
        query = query.where(Media.captured_at >= utc(since))
    if until is not None:
        query = query.where(Media.captured_at < utc(until))
    return query


def countries_of(views: Iterable[MovementView]) -> set[str]:
    """Every country a list of movements touches."""
    return {c for v in views for c in (v.from_country, v.to_country)}
