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

A caller who may not see every owner's exact places gets the estimates coarsened (areas
to 100 km², sigma to 0.5 km; no MMDM, likelihood, coefficients, covariance or mask cell
count: with windows and masks of their choosing these locate cameras), a mask fixed by
the server (``buffer_km``/``spacing_km`` are ignored, and the answer says so) and a
survey window of whole days, at least :data:`MIN_WINDOW_DAYS` long. Fits are CPU- and
memory-bound: ``population_workers`` at once (the rest get 503 with Retry-After), each
at most ``population_max_work`` mask cells × detectors × occasions (more: 422).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from reid.privacy import generalise
from reid.scr.exports import detector_order
from serve.access import audit_precise
from serve.deps import CallerScope, DbSession, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.uploads import to_utc

router = APIRouter(prefix="/v1", tags=["population"])

#: The mask of a caller who may not see every owner's exact places (km): fixed here.
FIXED_BUFFER_KM = 25.0
FIXED_SPACING_KM = 2.0
#: Such a caller's survey window: whole days, and at least this many.
MIN_WINDOW_DAYS = 30


class StationOut(BaseModel):
    detector: str = Field(description="Station code (exact) or an opaque name.")
    country: str | None = Field(description="ISO 3166-1 alpha-2 code of the station.")
    lat: float = Field(description="Latitude: exact, or the centre of its 0.25° cell.")
    lon: float = Field(description="Longitude: exact, or the centre of its 0.25° cell.")
    exact: bool = Field(description="Whether lat/lon are the station's exact place.")
    organisation: str | None = Field(description="Organisation owning the station's site.")


class CentreOut(BaseModel):
    lat: float = Field(description="Latitude: the 0.25° cell centre, or exact.")
    lon: float = Field(description="Longitude: the 0.25° cell centre, or exact.")
    individuals: int = Field(description="Activity centres in this cell (or at this point).")
    exact: bool = Field(description="Exact only when every owner's places are for the key.")


class PopulationOut(BaseModel):
    history: dict = Field(description="What the capture history holds (no coordinates).")
    joint: dict = Field(description="The joint SCR estimate (density per 100 km², ...); "
                        "coarsened unless every owner's exact places are for the key (areas "
                        "to 100 km², sigma to 0.5 km; no mask_cells, log_likelihood, aic, "
                        "coefficients, vcov).")
    by_country: dict[str, dict] = Field(description="One estimate per country, as `joint`.")
    not_fitted: dict[str, str] = Field(description="Countries not fitted, and why.")
    individuals_by_country: dict[str, int] = Field(description="Individuals per country.")
    n_shared: int = Field(description="Individuals detected in two or more countries.")
    sum_of_national_abundance: float = Field(description="What separate national surveys "
                                             "would report together.")
    nonspatial: dict | None = Field(description="Model M0 beside the SCR fit (its MMDM, area "
                                    "and density only when every owner's exact places are "
                                    "for the key).")
    warnings: list[str] = Field(description="What the caller should know about the fit.")
    stations: list[StationOut] = Field(description="The stations, placed as the key may see.")
    activity_centres: list[CentreOut] = Field(description="Activity centres per cell.")


@router.get(
    "/population", response_model=PopulationOut,
    responses=responses(*COMMON, (503, "Every population fit slot is busy: retry after "
                                       "`Retry-After` seconds.")),
)  # fmt: skip
def population(
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    state: State,
    species: Annotated[
        Literal["tiger", "leopard"] | None,
        Query(description="Species; required when the data hold tigers and leopards (a "
              "population is one species)."),
    ] = None,
    data: Annotated[Literal["own", "shared"], Query(
        alias="scope", description="own: the caller's organisation's cameras only; "
        "shared: also those of every organisation sharing its sightings with it.")] = "shared",
    flank: Annotated[Literal["left", "right", "both"], Query(
        description="Which flank's detections make the history.")] = "both",
    occasion_days: Annotated[int, Query(ge=1, le=60, description="Days per occasion.")] = 1,
    start: Annotated[datetime | None, Query(description="Survey start (UTC).")] = None,
    end: Annotated[datetime | None, Query(description="Survey end (UTC).")] = None,
    detector_type: Annotated[Literal["proximity", "count"], Query()] = "proximity",
    buffer_km: Annotated[float | None, Query(ge=5, le=100, description=(
        f"Mask buffer, km (default {FIXED_BUFFER_KM:g}). Ignored, and fixed at "
        f"{FIXED_BUFFER_KM:g}, unless the caller may see every owner's exact places."))] = None,
    spacing_km: Annotated[float | None, Query(ge=0.5, le=20, description=(
        f"Mask cell, km (default {FIXED_SPACING_KM:g}). Ignored, and fixed at "
        f"{FIXED_SPACING_KM:g}, unless the caller may see every owner's exact places."))] = None,
) -> PopulationOut:  # fmt: skip
    """SCR density, per country and jointly, from the confirmed sightings the caller may
    see (422 with the reason when they cannot be fitted).

    A caller who may not see the exact places of every owner whose cameras are in the
    history gets coarsened figures: areas rounded to 100 km², sigma to 0.5 km, abundance
    as density × that rounded area; no mean maximum distance moved, likelihood, AIC,
    coefficients, covariance or mask cell count. The mask is then fixed (25 km buffer,
    2 km cells: `buffer_km`/`spacing_km` are ignored and a warning says so) and
    `start`/`end` are whole days (start rounded down, end up) at least 30 days apart.
    Deployments without dates are left out (counted in `history.skipped`). One request
    may fit a limited number of mask cells × detectors × occasions (50 million by default;
    more is a 422); when every fit slot is busy the answer is 503 with Retry-After."""
    from reid.scr.assess import assess
    from reid.scr.histories import (
        build_history,
        deployments_from_registry,
        detections_from_registry,
    )

    owners = {scope.own} if data == "own" else set(scope.view)
    undated: list = []
    deployments = deployments_from_registry(session, owners=owners, undated=undated)
    detections = detections_from_registry(session, species, owners=owners)
    exact_all = bool(deployments) and all(d.owner in scope.precise for d in deployments)
    t0 = None if start is None else to_utc(start, "start")
    t1 = None if end is None else to_utc(end, "end")
    notes = []
    if not exact_all:
        if (buffer_km, spacing_km) != (None, None) and (buffer_km, spacing_km) != (
            FIXED_BUFFER_KM, FIXED_SPACING_KM
        ):
            notes.append(
                f"buffer_km and spacing_km are ignored: the mask is fixed at a "
                f"{FIXED_BUFFER_KM:g} km buffer and {FIXED_SPACING_KM:g} km cells for a "
                "caller who may not see every owner's exact places"
            )
        buffer_km, spacing_km = FIXED_BUFFER_KM, FIXED_SPACING_KM
        if t0 is not None:
            t0 = t0.replace(hour=0, minute=0, second=0, microsecond=0)
        if t1 is not None and t1 != t1.replace(hour=0, minute=0, second=0, microsecond=0):
            try:
                t1 = t1.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            except OverflowError:
                raise Problem(422, "end is beyond the last representable day",
                              field="end") from None  # fmt: skip
        if (t0 is not None or t1 is not None) and deployments:
            a0 = t0 or min(d.start for d in deployments).replace(
                hour=0, minute=0, second=0, microsecond=0)  # fmt: skip
            a1 = t1 or max(d.end for d in deployments)
            if a1 - a0 < timedelta(days=MIN_WINDOW_DAYS):
                raise Problem(
                    422, f"the survey window must be at least {MIN_WINDOW_DAYS} days for a "
                    "caller who may not see every owner's exact places", field="start",
                )  # fmt: skip
    buffer_km = FIXED_BUFFER_KM if buffer_km is None else buffer_km
    spacing_km = FIXED_SPACING_KM if spacing_km is None else spacing_km
    build = build_history(
        deployments, detections, occasion_days=occasion_days, start=t0, end=t1,
        flank=flank, detector_type=detector_type,
    )  # fmt: skip
    slots = state.population_slots
    if not slots.acquire(blocking=False):
        raise Problem(503, "every population fit slot is busy; retry shortly",
                      headers={"Retry-After": "30"})  # fmt: skip
    try:
        a = assess(build, buffer_m=buffer_km * 1000, spacing_m=spacing_km * 1000,
                   max_work=state.settings.population_max_work)  # fmt: skip
    finally:
        slots.release()
    owner_of = {}
    for d in deployments:
        owner_of.setdefault(d.station, d.owner)
    stations, exact_owners = [], set()
    all_exact = all(owner_of.get(s.id) in scope.precise for s in build.stations)
    # generalised: by grid cell, then a keyed hash, not by station code (it may spell places)
    for rank, k in enumerate(detector_order(build, exact=all_exact)):
        st = build.stations[k]
        owner = owner_of.get(st.id)
        lat, lon, exact = scope.locate(owner, st.lat, st.lon)
        if exact:
            exact_owners.add(owner)
        stations.append(StationOut(detector=st.id if exact else f"D{rank + 1:03d}",
                                   country=st.country, lat=lat, lon=lon, exact=exact,
                                   organisation=owner))  # fmt: skip
    cells: dict[tuple[float, float], int] = {}
    for lat, lon in a.centres_latlon():
        key = (round(lat, 6), round(lon, 6)) if all_exact else generalise(lat, lon)
        cells[key] = cells.get(key, 0) + 1
    centres = [CentreOut(lat=la, lon=lo, individuals=n, exact=all_exact)
               for (la, lo), n in sorted(cells.items())]  # fmt: skip
    if all_exact:
        exact_owners |= {owner_of.get(s.id) for s in build.stations}
    audit_precise(session, caller, "population", exact_owners)
    d = a.to_dict(exact=all_exact)
    history = dict(d["history"])
    if undated:
        history["skipped"] = {**history["skipped"], "undated deployments": len(undated)}
        notes.append(f"{len(undated)} camera deployments without start or end were left out: "
                     "their effort is unknown")  # fmt: skip
    d["warnings"] = [*d["warnings"], *notes]
    d["history"] = history
    return PopulationOut(
        history=d["history"], joint=d["joint"], by_country=d["by_country"],
        not_fitted=d["not_fitted"], individuals_by_country=d["individuals_by_country"],
        n_shared=d["n_shared"], sum_of_national_abundance=d["sum_of_national_abundance"],
        nonspatial=d["nonspatial"], warnings=d["warnings"], stations=stations,
        activity_centres=centres,
    )  # fmt: skip
