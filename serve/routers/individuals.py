"""Individuals and their sightings; cross-border movements."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from reid.registry import list_individuals
from serve.access import audit_precise
from serve.deps import CallerScope, DbSession, Viewer
from serve.problems import COMMON, Problem, responses
from serve.records import (
    filter_individual,
    individual_out,
    visible_individual,
    visible_individual_condition,
    visible_movements,
    visible_seen,
    visible_sightings,
)
from serve.schemas import IndividualDetailOut, IndividualOut, MovementOut
from serve.uploads import check_country_code, to_utc

router = APIRouter(prefix="/v1", tags=["individuals"])


@router.get("/individuals", response_model=list[IndividualOut], responses=responses(*COMMON))
def list_(
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    species: Annotated[Literal["tiger", "leopard"] | None, Query(description="Species.")] = None,
) -> list[IndividualOut]:
    """Individuals owned by (or seen by) the caller's organisation or its sharing partners."""
    seen = visible_seen(session, scope)
    return [
        individual_out(i, seen)
        for i in list_individuals(session, species, visible_individual_condition(scope))
    ]


@router.get(
    "/individuals/{code}", response_model=IndividualDetailOut, responses=responses(*COMMON, 404)
)
def read(code: str, session: DbSession, caller: Viewer, scope: CallerScope) -> IndividualDetailOut:
    """One individual (merged codes lead to the individual they became) and the sightings
    of it that the caller may see."""
    ind = visible_individual(session, scope, code)
    if ind is None:
        raise Problem(404, f"no individual {code!r}", field="code", kind="not-found")
    sightings, exact = visible_sightings(session, scope, individual=ind)
    audit_precise(session, caller, f"individual:{ind.code}", exact)
    seen = visible_seen(session, scope, ind)
    return IndividualDetailOut(**individual_out(ind, seen).model_dump(), sightings=sightings)


@router.get("/movements", response_model=list[MovementOut], responses=responses(*COMMON, 404))
def movements(
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    from_country: Annotated[str | None, Query(description="ISO 3166-1 alpha-2 code.")] = None,
    to_country: Annotated[str | None, Query(description="ISO 3166-1 alpha-2 code.")] = None,
    since: Annotated[datetime | None, Query(description="Arrived at or after (UTC).")] = None,
    individual: Annotated[str | None, Query(max_length=128, description="Individual.")] = None,
) -> list[MovementOut]:
    """Cross-border movements whose both sightings the caller may see, oldest first."""
    if from_country is not None:
        from_country = check_country_code(from_country, "from_country")
    if to_country is not None:
        to_country = check_country_code(to_country, "to_country")
    if since is not None:
        since = to_utc(since, "since")
    ind = filter_individual(session, scope, individual)
    out, exact = visible_movements(session, scope, from_country=from_country,
                                   to_country=to_country, since=since, individual=ind)
    audit_precise(session, caller, "movements", exact)
    return out
