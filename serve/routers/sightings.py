"""Sightings: list, read with the decision trail, and decide (confirm, new, reject)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from reid.movements import derive_movements
from reid.registry import Individual, Organisation, add_individual, confirm, reject
from reid.registry.services import check_country
from serve.access import Caller, Scope, audit, audit_precise
from serve.deps import AppState, CallerScope, DbSession, Reviewer, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.records import (
    filter_individual,
    sighting_detail,
    sighting_key,
    visible_individual,
    visible_sighting,
    visible_sightings,
)
from serve.schemas import DecisionIn, SightingDetailOut, SightingOut
from serve.uploads import check_no_coordinates, to_utc

router = APIRouter(prefix="/v1/sightings", tags=["sightings"])


@router.get("", response_model=list[SightingOut], responses=responses(*COMMON, 404))
def list_(
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    individual: Annotated[str | None, Query(max_length=128, description="Individual code.")] = None,
    country: Annotated[str | None, Query(description="ISO 3166-1 alpha-2 code.")] = None,
    status: Annotated[
        Literal["proposed", "confirmed", "rejected"] | None, Query(description="Status.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Captured at or after (UTC).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    after: Annotated[
        str | None,
        Query(max_length=128, description="The code of the last sighting of the previous "
              "page: the next page starts after it (same filters). Pages follow capture "
              "time, so this walks one listing; it is not a feed of what was added since "
              "(a sighting recorded later with an earlier capture time comes before it)."),
    ] = None,
) -> list[SightingOut]:
    """Sightings of the caller's organisation and of those sharing theirs, oldest first,
    a page of ``limit`` at a time (the next: ``after`` = the last code received; a page
    shorter than ``limit`` is the last); exact coordinates only where the key and the
    owner allow (every such read audited)."""
    ind = filter_individual(session, scope, individual)
    if country is not None:
        try:
            country = check_country(country)
        except Exception as e:
            raise Problem(422, str(e), field="country") from None
    views, exact = visible_sightings(
        session, scope, individual=ind, country=country, status=status,
        since=None if since is None else to_utc(since, "since"), limit=limit,
        after=None if after is None else sighting_key(session, scope, after, "after"),
    )  # fmt: skip
    for owner in {v.organisation for v in views if v.location.exact}:
        audit_precise(session, caller, "sightings", [owner],
                      count=sum(v.location.exact and v.organisation == owner for v in views))
    return views


@router.get("/{code}", response_model=SightingDetailOut, responses=responses(*COMMON, 404))
def read(code: str, session: DbSession, caller: Viewer, scope: CallerScope) -> SightingDetailOut:
    """One sighting with its decision trail."""
    out, exact = sighting_detail(session, scope, code)
    if exact:
        audit_precise(session, caller, f"sighting:{code}", [out.organisation])
    return out


@router.post(
    "/{code}/decision",
    response_model=SightingDetailOut,
    responses=responses(*COMMON, 404, (409, "action `new` with an individual code that "
                        "the caller's organisation already uses. (A sighting already decided "
                        "is not a conflict: deciding it again is a correction.)")),
)
def decide(
    code: str,
    body: DecisionIn,
    state: State,
    session: DbSession,
    caller: Reviewer,
    scope: CallerScope,
) -> SightingDetailOut:
    """Decide a sighting of the caller's organisation: confirm it as a candidate (or the
    proposed individual), name a new individual, or reject it. The decision, who made it
    and why go into the sighting's decision trail and the audit log.

    A sighting already confirmed or rejected may be decided again: that is a
    **correction** (200, not 409). It is appended to the trail (the earlier decisions
    stay), audited with the status and individual it replaced, the movements follow, and
    gallery photos enrolled from the sighting under the earlier individual are taken out
    of the gallery (``enrol`` adds it again under the new one)."""
    apply_decision(state, session, caller, scope, code, body)
    out, _ = sighting_detail(session, scope, code)
    return out


def apply_decision(
    state: AppState, session, caller: Caller, scope: Scope, code: str, body: DecisionIn
) -> None:
    """The decision of ``body`` on sighting ``code`` (shared by the API and review page)."""
    sig, owner = visible_sighting(session, scope, code)
    if owner != caller.organisation:
        raise Problem(403, f"sighting {code} belongs to {owner}: only its reviewers decide",
                      kind="foreign-sighting")  # fmt: skip
    # a decided sighting decided again is a correction: kept in the trail and the audit
    correction = {} if sig.status == "proposed" else {
        "corrects": sig.status, "was": sig.individual.code if sig.individual else None}
    trail = [d for d in sig_decisions(session, sig) if d.action == "propose"]
    shown = trail[0].candidates if trail else None
    model_version = trail[0].model_version if trail else None
    if body.action == "reject":
        reject(session, sig, caller.who, body.reason)
        target = None
    elif body.action == "confirm":
        target = _known(state, session, scope, body.individual, sig)
        confirm(session, sig, caller.who, individual=target, reason=body.reason,
                candidates=shown, model_version=model_version)  # fmt: skip
    else:
        target = _new(session, caller, body.individual, sig.species)
        confirm(session, sig, caller.who, individual=target,
                reason=body.reason or "new individual", candidates=shown,
                model_version=model_version)  # fmt: skip
    audit(session, caller, f"decision.{body.action}", f"sighting:{code}",
          detail={"individual": None if target is None else target.code,
                  "reason": body.reason, **correction})  # fmt: skip
    if correction.get("was") and (target is None or target.code != correction["was"]):
        from serve.routers.gallery import unenrol_sighting

        unenrol_sighting(state, session, caller, sig, correction["was"])
    if body.enrol and target is not None:
        from serve.routers.gallery import enrol_sighting

        enrol_sighting(state, session, caller, sig, target.code)
    # the decision changed the individual's confirmed sightings: its movements (and first
    # and last seen) follow in the same transaction, as the command line's readers do
    derive_movements(session)


def sig_decisions(session, sig):
    from reid.registry import decisions_of

    return decisions_of(session, sig)


def _known(state: AppState, session, scope: Scope, code: str | None, sig) -> Individual:
    """The individual to confirm: visible in the registry, or a candidate from the gallery
    that the caller may match against (then registered now)."""
    if code is None:
        if sig.individual is None:
            raise Problem(422, "no individual was proposed: name one", field="individual")
        return sig.individual
    ind = visible_individual(session, scope, code)
    if ind is not None:
        if ind.species != sig.species:
            raise Problem(422, f"individual {code} is a {ind.species}, not a {sig.species}",
                          field="individual")  # fmt: skip
        return ind
    matcher = state.matcher
    entries = [] if matcher is None else sorted((
        e for e in matcher.index.entries().values()
        if e.individual == code and e.organisation in scope.match
    ), key=lambda e: e.organisation != scope.own)  # the caller's own gallery first
    owner = None if not entries else session.scalar(
        select(Organisation).where(Organisation.code == entries[0].organisation))  # fmt: skip
    taken = owner is not None and session.scalar(select(Individual.id).where(
        Individual.code == code, Individual.organisation_id == owner.id)) is not None
    if not entries or taken:  # the owner's registry individual the caller may not see
        raise Problem(422, f"unknown individual {code!r}", field="individual")
    if entries[0].species != sig.species:
        raise Problem(422, f"individual {code} is a {entries[0].species}, not a {sig.species}",
                      field="individual")  # fmt: skip
    return add_individual(session, code, sig.species, organisation=owner)


def _new(session, caller: Caller, code: str | None, species: str) -> Individual:
    org = session.get(Organisation, caller.organisation_id)
    if code is None:
        prefix = {"tiger": "T", "leopard": "L"}[species]
        code = f"{prefix}-{caller.organisation}-{uuid.uuid4().hex[:6]}"
    check_no_coordinates(code, "individual")
    # codes are unique per organisation: only the caller's own can be in the way
    if session.scalar(select(Individual.id).where(
            Individual.code == code, Individual.organisation_id == org.id)) is not None:
        raise Problem(409, f"your organisation already has an individual {code!r}",
                      field="individual", kind="individual-exists")  # fmt: skip
    return add_individual(session, code, species, organisation=org)
