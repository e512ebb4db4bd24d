"""Registry reads and writes as a caller may do them: ownership, visibility, exactness.

A sighting belongs to the organisation of its site; an individual to its organisation
(or, without one, to those of its sightings); a movement is visible when both of its
sightings are. Exact coordinates are given per owner (:meth:`Scope.locate`), so one
answer can hold exact points of the caller's own cameras and generalised ones of a
partner's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reid.geo import haversine_km
from reid.movements import crossings, with_places
from reid.privacy import LOCAL_ADMIN, PUBLIC, shown_distance_km
from reid.registry import (
    Individual,
    Organisation,
    Sighting,
    Site,
    decisions_of,
    sighting_views,
    site_at_place,
)
from reid.registry.db import utc
from reid.registry.models import Deployment, Media
from reid.registry.services import SightingView
from serve.access import Caller, Scope
from serve.problems import Problem
from serve.schemas import (
    DecisionOut,
    IndividualOut,
    Location,
    MovementOut,
    SightingDetailOut,
    SightingOut,
)


def _placed(query):
    """``query`` (over sightings) joined to each sighting's photo, camera, site and the
    site's owner (absent for an unowned site)."""
    return (
        query.join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .outerjoin(Organisation, Site.organisation_id == Organisation.id)
    )


def sighting_out(view: SightingView, owner: str | None, scope: Scope) -> tuple[SightingOut, bool]:
    """The API form of a sighting (read with exact coordinates) and whether it stays exact."""
    lat, lon, exact = scope.locate(owner, view.lat, view.lon)
    site = view.site if exact else PUBLIC.shown_code(view.site)
    return SightingOut(
        code=view.code, individual=view.individual, species=view.species, side=view.side,
        status=view.status, captured_at=view.captured_at, organisation=owner,
        location=Location(country=view.country, site=site, lat=lat, lon=lon, exact=exact),
        image_url=f"/v1/media/{view.code}/thumbnail", box=list(view.box) if view.box else None,
    ), exact  # fmt: skip


def visible_sightings(
    session: Session, scope: Scope, *, where=None, **filters
) -> tuple[list[SightingOut], set[str]]:
    """Sightings the caller may see (filters as :func:`reid.registry.sighting_views`, all
    applied by the database: visibility, ``limit`` and paging included), and the
    organisations whose exact coordinates are among them (empty: none)."""
    visible = _owned_by(scope)
    out, exact_owners = [], set()
    views = sighting_views(session, LOCAL_ADMIN,
                           where=visible if where is None else visible & where, **filters)
    for v, owner in views:
        s, exact = sighting_out(v, owner, scope)
        out.append(s)
        if exact:
            exact_owners.add(owner)
    return out, exact_owners


def _visible_row(session: Session, scope: Scope, code: str, *columns):
    """``columns`` of the sighting ``code`` (and its photo, camera, site and owner) when
    the caller may see it, else None (absent and hidden alike)."""
    return session.execute(
        _placed(select(*columns)).where(Sighting.code == code, _owned_by(scope))
    ).first()


def visible_sighting(session: Session, scope: Scope, code: str) -> tuple[Sighting, str]:
    """The sighting ``code`` and its owner, or 404 when absent or not visible."""
    row = _visible_row(session, scope, code, Sighting, Organisation.code)
    if row is None:
        raise Problem(404, f"no sighting {code!r}", field="code", kind="not-found")
    return row[0], row[1]


def sighting_key(session: Session, scope: Scope, code: str, field: str) -> tuple[datetime, int]:
    """(capture time, id) of the sighting ``code`` that the caller may see: a page's last
    sighting, to continue after. A 422 on ``field`` when there is none (absent and hidden
    alike: the answer tells nothing of other organisations' sightings)."""
    row = _visible_row(session, scope, code, Media.captured_at, Sighting.id)
    if row is None:
        raise Problem(422, f"no sighting {code!r} to continue after", field=field)
    return row[0], row[1]


def sighting_detail(session: Session, scope: Scope, code: str) -> tuple[SightingDetailOut, bool]:
    sig, owner = visible_sighting(session, scope, code)
    ((view, _),) = sighting_views(session, LOCAL_ADMIN, code=code)  # codes are unique
    base, exact = sighting_out(view, owner, scope)
    trail = [
        DecisionOut(action=d.action, decided_by=d.decided_by, decided_at=d.decided_at,
                    reason=d.reason, model_version=d.model_version)  # fmt: skip
        for d in decisions_of(session, sig)
    ]
    return SightingDetailOut(**base.model_dump(), decisions=trail), exact


def visible_individual_condition(scope: Scope):
    """SQL condition: the caller may see this individual. An individual belongs to its
    organisation; one without an organisation belongs to those of its sightings' sites
    (and to the unowned registry, which a caller sees when ``None`` is in its view).
    Evaluated in the database, per individual, through the sightings' individual index:
    no request reads every sighting to decide."""
    # (an unowned site among them only matters where None is in view, and then every
    # individual without an organisation is visible anyway)
    through_sightings = (
        select(Sighting.id)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .where(Sighting.individual_id == Individual.id, _owned_by(scope))
        .exists()
    )
    unowned = Individual.organisation_id.is_(None)
    condition = Individual.organisation_id.in_(_visible_organisations(scope)) | (
        unowned & through_sightings
    )
    return condition | unowned if None in scope.view else condition


def _visible_organisations(scope: Scope):
    """SQL: the ids of the organisations the caller may see (``None``, the unowned
    registry, is each condition's own business)."""
    return select(Organisation.id).where(
        Organisation.code.in_(sorted(o for o in scope.view if o is not None))
    )


def _owned_by(scope: Scope):
    """SQL condition on :class:`Site` alone (no join to its owner needed): the site's
    owner is one the caller may see."""
    named = Site.organisation_id.in_(_visible_organisations(scope))
    return named | Site.organisation_id.is_(None) if None in scope.view else named


def visible_seen(
    session: Session, scope: Scope, individual: Individual | None = None
) -> dict[int, tuple]:
    """individual id -> (first, last) capture time of its confirmed sightings that the
    caller may see. The registry's own ``first_seen``/``last_seen`` span every
    organisation's sightings, so they would date a partner's sighting that the caller
    may not read."""
    q = (
        _placed(select(Sighting.individual_id, func.min(Media.captured_at),
                       func.max(Media.captured_at)))
        .where(Sighting.status == "confirmed", Sighting.individual_id.is_not(None),
               _owned_by(scope))
        .group_by(Sighting.individual_id)
    )  # fmt: skip
    if individual is not None:
        q = q.where(Sighting.individual_id == individual.id)
    return {iid: (first, last) for iid, first, last in session.execute(q)}


def individual_out(ind: Individual, seen: dict[int, tuple] | None = None) -> IndividualOut:
    """The API form of an individual; ``seen`` (:func:`visible_seen`) gives its first and
    last sighting as the caller may see them (none seen: null)."""
    first, last = (
        (ind.first_seen, ind.last_seen) if seen is None else seen.get(ind.id, (None, None))
    )
    return IndividualOut(
        code=ind.code, species=ind.species, sex=ind.sex,
        organisation=ind.organisation.code if ind.organisation else None,
        first_seen=first, last_seen=last,
    )  # fmt: skip


def _follow(session: Session, ind: Individual) -> Individual:
    seen = {ind.id}
    while ind.merged_into_id is not None:
        ind = session.get(Individual, ind.merged_into_id)
        if ind.id in seen:  # pragma: no cover - merges never form cycles
            break
        seen.add(ind.id)
    return ind


def filter_individual(session: Session, scope: Scope, code: str | None) -> Individual | None:
    """The individual a list is filtered by (query parameter ``individual``): None when no
    code is given, a 404 naming the field when the caller may not see one."""
    if code is None:
        return None
    ind = visible_individual(session, scope, code)
    if ind is None:
        raise Problem(404, f"no individual {code!r}", field="individual",
                      kind="not-found")  # fmt: skip
    return ind


def visible_individual(
    session: Session, scope: Scope, code: str, organisation: str | None = None
) -> Individual | None:
    """The individual ``code`` (following merges) that the caller may see, else None.

    Codes are unique per organisation: of the individuals with this code that the caller
    may see, the one of ``organisation`` when given, else the caller's own organisation's,
    else the first registered. Individuals the caller may not see play no part, so their
    codes can be neither blocked nor detected."""
    rows = session.scalars(select(Individual).where(Individual.code == code)
                           .order_by(Individual.id))  # fmt: skip
    visible = visible_individual_condition(scope)
    seen = []
    for ind in rows:
        ind = _follow(session, ind)
        if ind not in seen and session.scalar(
            select(Individual.id).where(Individual.id == ind.id, visible)
        ):
            seen.append(ind)
    if not seen:
        return None

    def org_of(i: Individual) -> str | None:
        return i.organisation.code if i.organisation else None

    for wanted in (organisation, scope.own):
        if wanted is not None:
            for ind in seen:
                if org_of(ind) == wanted:
                    return ind
    return None if organisation is not None else seen[0]


def visible_movements(
    session: Session,
    scope: Scope,
    *,
    from_country: str | None = None,
    to_country: str | None = None,
    since: datetime | None = None,
    individual: Individual | None = None,
) -> tuple[list[MovementOut], set[str]]:
    """Cross-border movements between consecutive confirmed sightings *that the caller may
    see*, oldest arrival first, exact per owner; and the organisations whose exact
    coordinates are among them.

    Derived in SQL from the visible sightings alone, by the registry's own derivation
    (:func:`reid.movements.crossings` with the caller's visibility as a condition):
    filtering the registry's movements instead would drop a crossing between two visible
    sightings whenever a hidden one lies between them, and that gap would tell the caller
    when a partner saw the animal."""
    moves = crossings(where=[_owned_by(scope)],
                      individual_id=None if individual is None else individual.id)
    q = with_places(moves).order_by(moves.c.captured_at, moves.c.individual_id,
                                    moves.c.sighting_id)  # fmt: skip
    if from_country is not None:
        q = q.where(moves.c.prev_country == from_country)
    if to_country is not None:
        q = q.where(moves.c.country == to_country)
    if since is not None:
        q = q.where(moves.c.captured_at >= utc(since))  # stored as naive UTC
    exact_owners: set[str] = set()
    out = [_movement(scope, r, exact_owners) for r in session.execute(q).mappings()]
    return out, exact_owners


def _movement(scope: Scope, r, exact_owners: set[str]) -> MovementOut:
    """The API form of one crossing (a row of :func:`reid.movements.with_places`)."""
    alat, alon, aex = scope.locate(r["prev_owner"], r["prev_lat"], r["prev_lon"])
    blat, blon, bex = scope.locate(r["owner"], r["lat"], r["lon"])
    exact_owners |= {o for o, ex in ((r["prev_owner"], aex), (r["owner"], bex)) if ex}
    a_site, b_site = r["prev_site_code"], r["site_code"]
    return MovementOut(
        individual=r["individual_code"], species=r["species"],
        start=Location(country=r["prev_country"], site=a_site if aex else PUBLIC.shown_code(a_site),
                       lat=alat, lon=alon, exact=aex),
        end=Location(country=r["country"], site=b_site if bex else PUBLIC.shown_code(b_site),
                     lat=blat, lon=blon, exact=bex),
        from_time=r["prev_captured_at"], to_time=r["captured_at"],
        distance_km=shown_distance_km(haversine_km(r["prev_lat"], r["prev_lon"], r["lat"],
                                                   r["lon"]),
                                      (alat, alon), (blat, blon), exact=aex and bex),
        days=round((r["captured_at"] - r["prev_captured_at"]).total_seconds() / 86400.0, 3),
    )  # fmt: skip


def site_at(session: Session, caller: Caller, country: str, lat: float, lon: float) -> Site:
    """The caller's site in ``country`` at (lat, lon) to 4 decimals, else a new one coded
    ``ORG:CC:site-<random>`` (:func:`reid.registry.site_at_place`)."""
    org = session.get(Organisation, caller.organisation_id)
    return site_at_place(session, org, country, lat, lon)


#: The longest site code the registry stores (``Site.code``).
SITE_CODE_MAX = 128


def caller_site_code(caller: Caller, code: str) -> str:
    """The code a site named ``code`` by ``caller`` is made under: ``ORG:code`` (kept
    when already so prefixed). Two organisations' names never collide, so naming a code
    that another organisation uses neither records at its site nor tells that it exists.
    A 422 when the prefix makes it longer than the registry stores (not the database's
    error, a 500)."""
    out = _prefixed(caller, code)
    if len(out) > SITE_CODE_MAX:
        raise Problem(422, f"site code {code!r} is too long: with your organisation's prefix "
                      f"it has {len(out)} characters, at most {SITE_CODE_MAX}",
                      field="site")  # fmt: skip
    return out


def _prefixed(caller: Caller, code: str) -> str:
    prefix = f"{caller.organisation}:"
    return code if code.startswith(prefix) else prefix + code


def own_site(session: Session, caller: Caller, code: str):
    """The caller's own site ``code`` (by :func:`caller_site_code`'s name first, then by
    the code as given, for sites named before the prefix), else None.

    Another organisation's site is, to this caller, a site that does not exist: a 403
    naming its owner would confirm a guessed code and who holds it (the API's rule: 404,
    never 403, for what a caller may not see). So is a site with no owner (the operator's,
    from the command line or an import without an organisation): no caller's scope
    includes it, so a photo recorded there would be a sighting its sender cannot read,
    and accepting the name would confirm that the site exists and where."""
    # the prefixed name unchecked: a lookup must not refuse a name the caller already has
    for candidate in dict.fromkeys((_prefixed(caller, code), code)):
        site = session.scalar(select(Site).where(Site.code == candidate))
        if site is not None and site.organisation_id == caller.organisation_id:
            return site
    return None
