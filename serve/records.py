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
from reid.privacy import LOCAL_ADMIN, PUBLIC, shown_distance_km
from reid.registry import (
    Individual,
    Organisation,
    Sighting,
    Site,
    decisions_of,
    list_sightings,
)
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


def sighting_owners(session: Session, codes: list[str] | None = None) -> dict[str, str | None]:
    """sighting code -> owning organisation code (the site's)."""
    q = _placed(select(Sighting.code, Organisation.code))
    if codes is not None:
        q = q.where(Sighting.code.in_(codes))
    return {a: b for a, b in session.execute(q)}


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
    session: Session, scope: Scope, **filters
) -> tuple[list[SightingOut], set[str]]:
    """Sightings the caller may see (filters as :func:`reid.registry.list_sightings`), and
    the organisations whose exact coordinates are among them (empty: none)."""
    owners = sighting_owners(session)
    out, exact_owners = [], set()
    for v in list_sightings(session, LOCAL_ADMIN, **filters):
        owner = owners.get(v.code)
        if owner in scope.view:
            s, exact = sighting_out(v, owner, scope)
            out.append(s)
            if exact:
                exact_owners.add(owner)
    return out, exact_owners


def visible_sighting(session: Session, scope: Scope, code: str) -> tuple[Sighting, str]:
    """The sighting ``code`` and its owner, or 404 when absent or not visible."""
    owner = sighting_owners(session, [code]).get(code, "\0absent")
    if owner not in scope.view:
        raise Problem(404, f"no sighting {code!r}", field="code", kind="not-found")
    return session.scalar(select(Sighting).where(Sighting.code == code)), owner  # type: ignore[return-value]


def sighting_detail(session: Session, scope: Scope, code: str) -> tuple[SightingDetailOut, bool]:
    sig, owner = visible_sighting(session, scope, code)
    (view,) = [v for v in list_sightings(session, LOCAL_ADMIN, individual=None)
               if v.code == code] or [None]  # fmt: skip
    if view is None:  # pragma: no cover - the sighting exists
        raise Problem(404, f"no sighting {code!r}", field="code", kind="not-found")
    base, exact = sighting_out(view, owner, scope)
    trail = [
        DecisionOut(action=d.action, decided_by=d.decided_by, decided_at=d.decided_at,
                    reason=d.reason, model_version=d.model_version)  # fmt: skip
        for d in decisions_of(session, sig)
    ]
    return SightingDetailOut(**base.model_dump(), decisions=trail), exact


def individual_owners(session: Session) -> dict[int, set[str | None]]:
    """individual id -> organisations that own it or one of its sightings (codes are
    unique per organisation only, so never key this by code)."""
    out: dict[int, set[str | None]] = {}
    for iid, org in session.execute(
        select(Individual.id, Organisation.code).outerjoin(
            Organisation, Individual.organisation_id == Organisation.id
        )
    ):
        out.setdefault(iid, set()).add(org)
    q = (
        select(Individual.id, Organisation.code)
        .join(Sighting, Sighting.individual_id == Individual.id)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .join(Organisation, Site.organisation_id == Organisation.id)
        .where(Individual.organisation_id.is_(None))
    )
    for iid, org in session.execute(q):
        out.setdefault(iid, set()).add(org)
    return out


def _owned_by(scope: Scope):
    """SQL condition: the site's owner is one the caller may see."""
    named = Organisation.code.in_(sorted(o for o in scope.view if o is not None))
    return named | Site.organisation_id.is_(None) if None in scope.view else named


def _confirmed(session: Session, scope: Scope, individual: Individual | None = None):
    """Confirmed sightings of individuals at sites the caller may see, in the order
    movements are derived in (by individual, then capture time, then id): (sighting id,
    individual id, individual code, species, time, country, site code, camera lat, camera
    lon, site owner)."""
    q = (
        _placed(
            select(Sighting.id, Sighting.individual_id, Individual.code, Individual.species,
                   Media.captured_at, Site.country, Site.code, Deployment.lat, Deployment.lon,
                   Organisation.code)
            .join(Individual, Sighting.individual_id == Individual.id)
        )
        .where(Sighting.status == "confirmed", _owned_by(scope))
        .order_by(Sighting.individual_id, Media.captured_at, Sighting.id)
    )  # fmt: skip
    if individual is not None:
        q = q.where(Sighting.individual_id == individual.id)
    return session.execute(q)


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
    owners = individual_owners(session)
    seen = []
    for ind in rows:
        ind = _follow(session, ind)
        if owners.get(ind.id, set()) & scope.view and ind not in seen:
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

    Derived from the visible sightings alone, as the registry derives its movements from
    all of them (:mod:`reid.movements`): filtering the registry's movements instead would
    drop a crossing between two visible sightings whenever a hidden one lies between them,
    and that gap would tell the caller when a partner saw the animal."""
    out, exact_owners = [], set()
    prev = None
    for row in _confirmed(session, scope, individual):
        crossed = prev is not None and prev[1] == row[1] and prev[5] != row[5]
        if crossed and ((from_country is None or prev[5] == from_country)
                        and (to_country is None or row[5] == to_country)
                        and (since is None or row[4] >= since)):  # fmt: skip
            out.append(_movement(scope, prev, row, exact_owners))
        prev = row
    out.sort(key=lambda m: m.to_time)
    return out, exact_owners


def _movement(scope: Scope, a, b, exact_owners: set[str]) -> MovementOut:
    alat, alon, aex = scope.locate(a[9], a[7], a[8])
    blat, blon, bex = scope.locate(b[9], b[7], b[8])
    exact_owners |= {o for o, ex in ((a[9], aex), (b[9], bex)) if ex}
    return MovementOut(
        individual=b[2], species=b[3],
        start=Location(country=a[5], site=a[6] if aex else PUBLIC.shown_code(a[6]), lat=alat,
                       lon=alon, exact=aex),
        end=Location(country=b[5], site=b[6] if bex else PUBLIC.shown_code(b[6]), lat=blat,
                     lon=blon, exact=bex),
        from_time=a[4], to_time=b[4],
        distance_km=shown_distance_km(haversine_km(a[7], a[8], b[7], b[8]), (alat, alon),
                                      (blat, blon), exact=aex and bex),
        days=round((b[4] - a[4]).total_seconds() / 86400.0, 3),
    )  # fmt: skip


def site_at(session: Session, caller: Caller, country: str, lat: float, lon: float) -> Site:
    """The caller's site in ``country`` at (lat, lon) to 4 decimals, else a new one coded
    ``ORG:CC:site-<random>`` (:func:`reid.registry.site_at_place`)."""
    from reid.registry import site_at_place

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
