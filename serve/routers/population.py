"""Population assessment: SCR density from the sightings an organisation may see.

``GET /v1/population`` builds the capture history from the confirmed sightings at the
cameras of the caller's organisation (``scope=own``) or of it and every organisation
sharing its sightings with it (``scope=shared``, the default), fits SCR jointly and per
country (:mod:`reid.scr`), and answers the estimates, the individuals per country and
across the border, and the stations. Places follow the same rules as every other answer:
a station is exact only where the caller may see its owner's exact coordinates (each
such read audited), else at its 0.25° cell centre with an opaque name; activity centres,
which mix every owner's cameras, are given only as 0.25° cells, and exactly only when
the caller may see every owner's exact coordinates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from reid.privacy import generalise
from serve.access import audit_precise
from serve.deps import CallerScope, DbSession, Viewer
from serve.problems import COMMON, responses
from serve.uploads import to_utc

router = APIRouter(prefix="/v1", tags=["population"])


class StationOut(BaseModel):
    detector: str = Field(description="Station code (exact) or an opaque name.")
    country: str | None
    lat: float
    lon: float
    exact: bool
    organisation: str | None


class CentreOut(BaseModel):
    lat: float
    lon: float
    individuals: int = Field(description="Activity centres in this cell (or at this point).")
    exact: bool


class PopulationOut(BaseModel):
    history: dict = Field(description="What the capture history holds (no coordinates).")
    joint: dict = Field(description="The joint SCR estimate (density per 100 km², ...).")
    by_country: dict[str, dict]
    not_fitted: dict[str, str]
    individuals_by_country: dict[str, int]
    n_shared: int = Field(description="Individuals detected in two or more countries.")
    sum_of_national_abundance: float
    nonspatial: dict | None
    warnings: list[str]
    stations: list[StationOut]
    activity_centres: list[CentreOut]


@router.get("/population", response_model=PopulationOut, responses=responses(*COMMON))
def population(
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    species: Annotated[Literal["tiger", "leopard"] | None, Query(description="Species.")] = None,
    data: Annotated[Literal["own", "shared"], Query(
        alias="scope", description="own: the caller's organisation's cameras only; "
        "shared: also those of every organisation sharing its sightings with it.")] = "shared",
    flank: Annotated[Literal["left", "right", "both"], Query(
        description="Which flank's detections make the history.")] = "both",
    occasion_days: Annotated[int, Query(ge=1, le=60, description="Days per occasion.")] = 1,
    start: Annotated[datetime | None, Query(description="Survey start (UTC).")] = None,
    end: Annotated[datetime | None, Query(description="Survey end (UTC).")] = None,
    detector_type: Annotated[Literal["proximity", "count"], Query()] = "proximity",
    buffer_km: Annotated[float, Query(ge=5, le=100, description="Mask buffer, km.")] = 25.0,
    spacing_km: Annotated[float, Query(ge=0.5, le=20, description="Mask cell, km.")] = 2.0,
) -> PopulationOut:  # fmt: skip
    """SCR density, per country and jointly, from the confirmed sightings the caller may
    see (422 with the reason when they cannot be fitted)."""
    from reid.scr.assess import assess
    from reid.scr.histories import (
        build_history,
        deployments_from_registry,
        detections_from_registry,
    )

    owners = {scope.own} if data == "own" else set(scope.view)
    deployments = deployments_from_registry(session, owners=owners)
    detections = detections_from_registry(session, species, owners=owners)
    build = build_history(
        deployments, detections, occasion_days=occasion_days,
        start=None if start is None else to_utc(start, "start"),
        end=None if end is None else to_utc(end, "end"),
        flank=flank, detector_type=detector_type,
    )  # fmt: skip
    a = assess(build, buffer_m=buffer_km * 1000, spacing_m=spacing_km * 1000)
    owner_of = {}
    for d in deployments:
        owner_of.setdefault(d.station, d.owner)
    stations, exact_owners = [], set()
    for k, st in enumerate(build.stations):
        owner = owner_of.get(st.id)
        lat, lon, exact = scope.locate(owner, st.lat, st.lon)
        if exact:
            exact_owners.add(owner)
        stations.append(StationOut(detector=st.id if exact else f"D{k + 1:03d}",
                                   country=st.country, lat=lat, lon=lon, exact=exact,
                                   organisation=owner))  # fmt: skip
    all_exact = all(owner_of.get(s.id) in scope.precise for s in build.stations)
    cells: dict[tuple[float, float], int] = {}
    for lat, lon in a.centres_latlon():
        key = (round(lat, 6), round(lon, 6)) if all_exact else generalise(lat, lon)
        cells[key] = cells.get(key, 0) + 1
    centres = [CentreOut(lat=la, lon=lo, individuals=n, exact=all_exact)
               for (la, lo), n in sorted(cells.items())]  # fmt: skip
    if all_exact:
        exact_owners |= {owner_of.get(s.id) for s in build.stations}
    audit_precise(session, caller, "population", exact_owners)
    d = a.to_dict()
    return PopulationOut(
        history=d["history"], joint=d["joint"], by_country=d["by_country"],
        not_fitted=d["not_fitted"], individuals_by_country=d["individuals_by_country"],
        n_shared=d["n_shared"], sum_of_national_abundance=d["sum_of_national_abundance"],
        nonspatial=d["nonspatial"], warnings=d["warnings"], stations=stations,
        activity_centres=centres,
    )  # fmt: skip
