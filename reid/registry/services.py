"""What callers do with the registry: record, decide, curate, list.

Every function takes an open :class:`~sqlalchemy.orm.Session` and leaves committing to
the caller (``with Registry().session() as s: ...``), so that one request or one import is
one transaction. Bad input raises :class:`~reid.errors.ReidError` naming the field.
Anything that changes which confirmed sightings an individual has marks it stale, so that
:func:`reid.movements.derive_movements` recomputes exactly those individuals.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pycountry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reid.errors import ReidError
from reid.privacy import Viewer
from reid.registry.db import utc
from reid.registry.models import (
    SEXES,
    SIDES,
    SPECIES,
    STATUSES,
    Decision,
    Deployment,
    Individual,
    Media,
    Merge,
    MergedSighting,
    Organisation,
    Sighting,
    Site,
)


def now() -> datetime:
    """The current time, naive UTC as stored."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_code(prefix: str) -> str:
    """A fresh unique identifier such as ``sig-3f2a...``."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def check_country(country: str) -> str:
    """The upper-case alpha-2 code, or an error naming the bad value."""
    code = (country or "").strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ReidError(f"country {country!r} is not an ISO 3166-1 alpha-2 code")
    return code


def check_coordinates(lat: float, lon: float) -> tuple[float, float]:
    """(lat, lon) as floats, or an error when outside -90..90 / -180..180."""
    lat, lon = float(lat), float(lon)
    if not -90 <= lat <= 90:
        raise ReidError(f"latitude {lat} is outside -90..90")
    if not -180 <= lon <= 180:
        raise ReidError(f"longitude {lon} is outside -180..180")
    return lat, lon


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ReidError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


# -- places and media ----------------------------------------------------------------


def ensure_organisation(
    session: Session, code: str, country: str, name: str | None = None
) -> Organisation:
    """The organisation with ``code``, created when new."""
    org = session.scalar(select(Organisation).where(Organisation.code == code))
    if org is None:
        org = Organisation(code=code, name=name or code, country=check_country(country))
        session.add(org)
        session.flush()
    return org


def ensure_site(
    session: Session,
    code: str,
    country: str,
    lat: float,
    lon: float,
    protected_area: str | None = None,
    organisation: Organisation | None = None,
) -> Site:
    """The site with ``code``, created when new (its country and coordinates checked)."""
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        lat, lon = check_coordinates(lat, lon)
        site = Site(
            code=code,
            country=check_country(country),
            lat=lat,
            lon=lon,
            protected_area=protected_area,
            organisation=organisation,
        )
        session.add(site)
        session.flush()
    return site


def site_at_place(
    session: Session,
    organisation: Organisation | None,
    country: str,
    lat: float,
    lon: float,
    protected_area: str | None = None,
    *,
    opaque_only: bool = False,
) -> Site:
    """The site of ``organisation`` (None: unowned) in ``country`` at (lat, lon) to 4
    decimals (with ``opaque_only``, only among sites under an opaque code), else a new one
    coded ``[ORG:]CC:site-<random>``: random, never derived from a name or the place, which
    a reader who sees the grid cell could search for (every reader of a site code sees it,
    cleared for exact positions or not)."""
    import uuid

    owner = (Site.organisation_id.is_(None) if organisation is None
             else Site.organisation_id == organisation.id)  # fmt: skip
    query = select(Site).where(owner, Site.country == country)
    if opaque_only:
        query = query.where(Site.code.like("%site-%"))
    for row in session.scalars(query):
        if (round(row.lat, 4), round(row.lon, 4)) == (round(lat, 4), round(lon, 4)):
            return row
    prefix = f"{organisation.code}:" if organisation is not None else ""
    code = f"{prefix}{country}:site-{uuid.uuid4().hex[:10]}"
    return ensure_site(session, code, country, lat, lon, protected_area, organisation)


def ensure_deployment(
    session: Session,
    code: str,
    site: Site,
    lat: float | None = None,
    lon: float | None = None,
    camera_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Deployment:
    """The camera deployment ``code`` at ``site`` (coordinates default to the site's)."""
    dep = session.scalar(select(Deployment).where(Deployment.code == code))
    if dep is None:
        lat, lon = check_coordinates(
            site.lat if lat is None else lat, site.lon if lon is None else lon
        )
        dep = Deployment(
            code=code,
            site=site,
            lat=lat,
            lon=lon,
            camera_id=camera_id,
            start=None if start is None else utc(start),
            end=None if end is None else utc(end),
        )
        session.add(dep)
        session.flush()
    return dep


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_media(
    session: Session,
    deployment: Deployment,
    file_path: str | Path,
    captured_at: datetime,
    sha256: str | None = None,
    code: str | None = None,
    mediatype: str = "image/jpeg",
) -> Media:
    """Record a photo; its SHA-256 is computed from the file when not given and it exists."""
    if sha256 is None and Path(file_path).is_file():
        sha256 = sha256_file(Path(file_path))
    media = Media(
        code=code or new_code("med"),
        deployment=deployment,
        file_path=str(file_path),
        sha256=sha256,
        captured_at=utc(captured_at),
        mediatype=mediatype,
    )
    session.add(media)
    session.flush()
    return media


# -- individuals ---------------------------------------------------------------------


def add_individual(
    session: Session,
    code: str,
    species: str,
    sex: str | None = None,
    organisation: Organisation | None = None,
) -> Individual:
    """A new individual; its code must be unused."""
    _choice(species, SPECIES, "species")
    if sex is not None:
        _choice(sex, SEXES, "sex")
    same_owner = (Individual.organisation_id.is_(None) if organisation is None
                  else Individual.organisation_id == organisation.id)  # fmt: skip
    if session.scalar(select(Individual.id).where(Individual.code == code, same_owner)):
        raise ReidError(f"individual {code!r} already exists")
    ind = Individual(code=code, species=species, sex=sex, organisation=organisation, stale=True)
    session.add(ind)
    session.flush()
    return ind


def find_individual(
    session: Session, code: str, organisation: str | None = None
) -> Individual | None:
    """The individual ``code`` (not following merges): the one of ``organisation`` when it
    has one, else the only one with that code; None when there is none. Codes are unique
    per organisation, so two organisations may each have one: then, without one of them
    named, this is an error naming them."""
    rows = list(session.scalars(select(Individual).where(Individual.code == code)
                                .order_by(Individual.id)))  # fmt: skip
    if organisation is not None:
        own = [i for i in rows if i.organisation and i.organisation.code == organisation]
        if own:
            return own[0]
    if len(rows) <= 1:
        return rows[0] if rows else None
    owners = sorted(i.organisation.code if i.organisation else "(none)" for i in rows)
    raise ReidError(f"individual code {code!r} is used by several organisations "
                    f"({', '.join(owners)}): name the organisation")  # fmt: skip


def get_individual(
    session: Session, code: str, follow_merges: bool = True, organisation: str | None = None
) -> Individual:
    """The individual ``code`` (by default the one it was merged into, if any); see
    :func:`find_individual` for codes that several organisations use."""
    ind = find_individual(session, code, organisation)
    if ind is None:
        raise ReidError(f"no individual {code!r} in the registry")
    seen = {ind.id}
    while follow_merges and ind.merged_into_id is not None:
        ind = session.get(Individual, ind.merged_into_id)
        if ind.id in seen:  # pragma: no cover - merges never form cycles
            break
        seen.add(ind.id)
    return ind


def _mark_stale(session: Session, *individual_ids: int | None) -> None:
    ids = [i for i in individual_ids if i is not None]
    if ids:
        session.execute(update(Individual).where(Individual.id.in_(ids)).values(stale=True))


# -- sightings and decisions ---------------------------------------------------------


def add_sighting(
    session: Session,
    media: Media,
    species: str,
    *,
    side: str = "unknown",
    box: tuple[float, float, float, float] | None = None,
    individual: Individual | None = None,
    status: str = "proposed",
    decided_by: str,
    candidates: list[dict] | None = None,
    model_version: str | None = None,
    reason: str | None = None,
    code: str | None = None,
    decided_at: datetime | None = None,
) -> Sighting:
    """Record an animal on a photo with the decision that put it there.

    ``box`` is (x, y, width, height) as fractions of the image (Camtrap DP's bbox);
    ``candidates`` are what the decider was shown, e.g. ``[{"individual": "T-017",
    "score": 0.93}]``; ``model_version`` names the model that proposed them.
    """
    _choice(species, SPECIES, "species")
    _choice(side, SIDES, "side")
    _choice(status, STATUSES, "status")
    if individual is not None and individual.species != species:
        raise ReidError(
            f"individual {individual.code} is a {individual.species}, the sighting a {species}"
        )
    if status == "confirmed" and individual is None:
        raise ReidError("a confirmed sighting needs an individual")
    if box is not None:
        if len(box) != 4 or not all(0.0 <= float(v) <= 1.0 for v in box):
            raise ReidError(f"box {box} is not (x, y, width, height) as fractions 0-1")
        if box[0] + box[2] > 1 + 1e-5 or box[1] + box[3] > 1 + 1e-5:  # 6-decimal rounding
            raise ReidError(f"box {box} reaches outside the image")
    x, y, w, h = box if box is not None else (None, None, None, None)
    sighting = Sighting(
        code=code or new_code("sig"),
        media=media,
        individual=individual,
        species=species,
        side=side,
        status=status,
        bbox_x=x,
        bbox_y=y,
        bbox_w=w,
        bbox_h=h,
    )
    session.add(sighting)
    session.flush()
    _decide(
        session, sighting, "confirm" if status == "confirmed" else "propose",
        decided_by, reason, candidates, model_version, decided_at,
    )  # fmt: skip
    if status == "confirmed":
        _mark_stale(session, sighting.individual_id)
    return sighting


def _decide(
    session: Session,
    sighting: Sighting | None,
    action: str,
    decided_by: str,
    reason: str | None,
    candidates: list[dict] | None = None,
    model_version: str | None = None,
    decided_at: datetime | None = None,
    individual_id: int | None = None,
) -> Decision:
    if not decided_by:
        raise ReidError("every decision needs who made it (decided_by)")
    decision = Decision(
        sighting_id=None if sighting is None else sighting.id,
        individual_id=individual_id if sighting is None else sighting.individual_id,
        action=action,
        candidates=candidates,
        model_version=model_version,
        decided_by=decided_by,
        decided_at=now() if decided_at is None else utc(decided_at),
        reason=reason,
    )
    session.add(decision)
    return decision


def get_sighting(session: Session, code: str) -> Sighting:
    """The sighting ``code``."""
    sighting = session.scalar(select(Sighting).where(Sighting.code == code))
    if sighting is None:
        raise ReidError(f"no sighting {code!r} in the registry")
    return sighting


def confirm(
    session: Session,
    sighting: Sighting,
    decided_by: str,
    individual: Individual | None = None,
    reason: str | None = None,
    candidates: list[dict] | None = None,
    model_version: str | None = None,
) -> Sighting:
    """Confirm a sighting as ``individual`` (default: the one proposed); also corrects one."""
    target = individual or sighting.individual
    if target is None:
        raise ReidError(f"sighting {sighting.code} has no proposed individual: name one")
    if target.species != sighting.species:
        raise ReidError(f"individual {target.code} is a {target.species}, not a {sighting.species}")
    before = sighting.individual_id
    sighting.individual = target
    sighting.status = "confirmed"
    session.flush()
    _decide(session, sighting, "confirm", decided_by, reason, candidates, model_version)
    _mark_stale(session, before, target.id)
    return sighting


def reject(
    session: Session, sighting: Sighting, decided_by: str, reason: str | None = None
) -> Sighting:
    """Reject a sighting's identification (it no longer counts as a sighting of anyone)."""
    sighting.status = "rejected"
    session.flush()
    _decide(session, sighting, "reject", decided_by, reason)
    _mark_stale(session, sighting.individual_id)
    return sighting


def decisions_of(session: Session, sighting: Sighting) -> list[Decision]:
    """The decision trail of a sighting, oldest first."""
    return list(
        session.scalars(
            select(Decision).where(Decision.sighting_id == sighting.id).order_by(Decision.id)
        )
    )


# -- curation: merge and split -------------------------------------------------------


def merge(
    session: Session, keep: Individual, other: Individual, decided_by: str, reason: str | None
) -> Merge:
    """Fold ``other`` into ``keep``: its sightings move, it stays as a pointer, history kept."""
    if keep.id == other.id:
        raise ReidError(f"cannot merge {keep.code} with itself")
    if keep.merged_into_id is not None or other.merged_into_id is not None:
        raise ReidError("merge the current individuals, not ones already merged away")
    if keep.species != other.species:
        raise ReidError(f"{keep.code} is a {keep.species} and {other.code} a {other.species}")
    record = Merge(
        kept_id=keep.id, merged_id=other.id, done_by=decided_by, done_at=now(), reason=reason
    )
    session.add(record)
    session.flush()
    moved = list(session.scalars(select(Sighting.id).where(Sighting.individual_id == other.id)))
    session.add_all(MergedSighting(merge_id=record.id, sighting_id=s) for s in moved)
    session.execute(
        update(Sighting).where(Sighting.individual_id == other.id).values(individual_id=keep.id)
    )
    other.merged_into_id = keep.id
    if keep.sex is None:
        keep.sex = other.sex
    _decide(session, None, "merge", decided_by, reason, [{"merged": other.code}],
            individual_id=keep.id)  # fmt: skip
    _mark_stale(session, keep.id, other.id)
    session.flush()
    return record


def split(session: Session, merged: Individual, decided_by: str, reason: str | None) -> Merge:
    """Undo the merge that folded ``merged`` away: exactly its sightings move back."""
    record = session.scalar(
        select(Merge)
        .where(Merge.merged_id == merged.id, Merge.undone_at.is_(None))
        .order_by(Merge.id.desc())
    )
    if record is None or merged.merged_into_id is None:
        raise ReidError(f"{merged.code} was not merged into another individual: nothing to split")
    kept = session.get(Individual, record.kept_id)
    if kept.merged_into_id is not None:
        raise ReidError(f"{kept.code} was itself merged away since: split that merge first")
    moved = select(MergedSighting.sighting_id).where(MergedSighting.merge_id == record.id)
    session.execute(
        update(Sighting)
        .where(Sighting.id.in_(moved), Sighting.individual_id == record.kept_id)
        .values(individual_id=merged.id)
    )
    merged.merged_into_id = None
    record.undone_at, record.undone_by = now(), decided_by
    _decide(session, None, "split", decided_by, reason, [{"restored": merged.code}],
            individual_id=kept.id)  # fmt: skip
    _mark_stale(session, record.kept_id, merged.id)
    session.flush()
    return record


def history_of(session: Session, individual: Individual) -> list[Decision]:
    """Every decision about an individual or its sightings, oldest first."""
    sightings = select(Sighting.id).where(Sighting.individual_id == individual.id)
    return list(
        session.scalars(
            select(Decision)
            .where(
                (Decision.individual_id == individual.id) | Decision.sighting_id.in_(sightings)
            )
            .order_by(Decision.decided_at, Decision.id)
        )
    )


# -- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class SightingView:
    """A sighting as a caller may see it (coordinates already generalised if need be)."""

    code: str
    individual: str | None
    species: str
    side: str
    status: str
    captured_at: datetime
    country: str
    site: str
    protected_area: str | None
    lat: float
    lon: float
    media: str
    file_path: str
    box: tuple[float, float, float, float] | None


def list_sightings(
    session: Session,
    viewer: Viewer,
    *,
    individual: str | Individual | None = None,
    country: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[SightingView]:
    """Sightings, oldest first, filtered; coordinates as ``viewer`` may see them."""
    return [
        view
        for view, _ in sighting_views(session, viewer, individual=individual, country=country,
                                      status=status, since=since, until=until, limit=limit)
    ]  # fmt: skip


def sighting_views(
    session: Session,
    viewer: Viewer,
    *,
    individual: str | Individual | None = None,
    country: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    code: str | None = None,
    where=None,
    after: tuple[datetime, int] | None = None,
    newest_first: bool = False,
) -> list[tuple[SightingView, str | None]]:
    """(sighting, code of the site's owner or None) pairs, oldest first (``newest_first``:
    the other way), filtered as :func:`list_sightings` and further by the sighting's
    ``code``, an SQL condition ``where`` (over the sighting, its photo, camera and site: a
    reader's visibility, say) and ``after``, a (capture time, sighting id) the results
    follow in their order (a page's last sighting: keyset paging). Every filter and the
    ``limit`` are applied by the database."""
    order = (Media.captured_at, Sighting.id)
    query = (
        select(Sighting, Media, Deployment, Site, Individual.code, Organisation.code)
        .join(Media, Sighting.media_id == Media.id)
        .join(Deployment, Media.deployment_id == Deployment.id)
        .join(Site, Deployment.site_id == Site.id)
        .outerjoin(Individual, Sighting.individual_id == Individual.id)
        .outerjoin(Organisation, Site.organisation_id == Organisation.id)
        .order_by(*(c.desc() for c in order) if newest_first else order)
    )
    if individual is not None:
        if not isinstance(individual, Individual):
            individual = get_individual(session, individual)
        query = query.where(Sighting.individual_id == individual.id)
    if country is not None:
        query = query.where(Site.country == check_country(country))
    if status is not None:
        query = query.where(Sighting.status == _choice(status, STATUSES, "status"))
    if since is not None:
        query = query.where(Media.captured_at >= utc(since))
    if until is not None:
        query = query.where(Media.captured_at < utc(until))
    if code is not None:
        query = query.where(Sighting.code == code)
    if where is not None:
        query = query.where(where)
    if after is not None:
        at, sighting_id = after
        beyond = (Media.captured_at < at) if newest_first else (Media.captured_at > at)
        tie = (Sighting.id < sighting_id) if newest_first else (Sighting.id > sighting_id)
        query = query.where(beyond | ((Media.captured_at == at) & tie))
    if limit is not None:
        query = query.limit(limit)
    out = []
    for sig, media, dep, site, ind_code, owner in session.execute(query):
        lat, lon = viewer.locate(dep.lat, dep.lon)
        box = None if sig.bbox_x is None else (sig.bbox_x, sig.bbox_y, sig.bbox_w, sig.bbox_h)
        view = SightingView(
            code=sig.code,
            individual=ind_code,
            species=sig.species,
            side=sig.side,
            status=sig.status,
            captured_at=media.captured_at,
            country=site.country,
            site=viewer.shown_code(site.code),
            protected_area=site.protected_area,
            lat=lat,
            lon=lon,
            media=media.code,
            file_path=viewer.shown_path(media.file_path, media.code),
            box=box,
        )
        out.append((view, owner))
    return out


def list_individuals(
    session: Session, species: str | None = None, where=None
) -> list[Individual]:
    """Current individuals (merged-away ones left out), by code; ``where``: a further SQL
    condition (a reader's visibility, say)."""
    query = select(Individual).where(Individual.merged_into_id.is_(None)).order_by(Individual.code)
    if where is not None:
        query = query.where(where)
    if species is not None:
        query = query.where(Individual.species == _choice(species, SPECIES, "species"))
    return list(session.scalars(query))
