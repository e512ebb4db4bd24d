"""POST /v1/match: a flank photo and where/when it was taken -> ranked candidates, the
new-individual probability and the evidence; recorded as a proposed sighting."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile

from reid.registry import add_media, add_sighting, ensure_deployment, ensure_site
from reid.registry.models import Individual
from serve.access import audit
from serve.deps import CallerScope, Contributor, DbSession, State
from serve.problems import COMMON, Problem, responses
from serve.records import caller_site_code, own_site, site_at, visible_individual
from serve.schemas import CandidateOut, EvidenceOut, MatchOut
from serve.uploads import (
    box_of,
    check_country_code,
    check_no_coordinates,
    check_place,
    check_time,
    cropped,
    keep,
    read_upload,
)

router = APIRouter(prefix="/v1", tags=["match"])


@router.post(
    "/match",
    response_model=MatchOut,
    responses=responses(*COMMON, 404, 413, 415, 503),
    summary="Identify the animal on a flank photo",
)
def match(
    state: State,
    session: DbSession,
    caller: Contributor,
    scope: CallerScope,
    image: Annotated[UploadFile, File(description="The photo (JPEG, PNG, WebP, TIFF, BMP).")],
    species: Annotated[Literal["tiger", "leopard"], Form(description="Species on the photo.")],
    captured_at: Annotated[datetime, Form(description="Capture time, ISO 8601 (UTC if no zone).")],
    site: Annotated[
        str | None,
        Form(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:-]+$",
             description="Site code: one of the caller's sites, or a new one with "
                         "country, lat, lon (made as ORG:code)."),
    ] = None,  # fmt: skip
    country: Annotated[
        str | None, Form(description="ISO 3166-1 alpha-2 code of where it was taken.")
    ] = None,
    lat: Annotated[float | None, Form(description="Camera latitude (WGS 84).")] = None,
    lon: Annotated[float | None, Form(description="Camera longitude (WGS 84).")] = None,
    camera: Annotated[
        str | None,
        Form(max_length=100, pattern=r"^[A-Za-z0-9._:-]*$", description="Camera id."),
    ] = None,
    side: Annotated[
        Literal["left", "right", "unknown"], Form(description="Flank, if known.")
    ] = "unknown",
    box_x: Annotated[int | None, Form(ge=0, description="Box left edge (px).")] = None,
    box_y: Annotated[int | None, Form(ge=0, description="Box top edge (px).")] = None,
    box_w: Annotated[int | None, Form(ge=1, description="Box width (px).")] = None,
    box_h: Annotated[int | None, Form(ge=1, description="Box height (px).")] = None,
    top: Annotated[int, Form(ge=1, le=50, description="Candidates to return.")] = 5,
) -> MatchOut:
    """Match the animal on ``image`` against the gallery images of the caller's own
    organisation and of organisations that share theirs with it.

    The photo is recorded as a *proposed* sighting (the best candidate, when the decision
    is "known" and the individual is in the registry); a reviewer confirms, names a new
    individual or rejects it (POST /v1/sightings/{code}/decision, or the review page).
    Nothing is stored when any field is refused.
    """
    s = state.settings
    moment = check_time(captured_at)
    place = _place(session, caller, site, country, lat, lon)
    if camera:
        check_no_coordinates(camera, "camera")
    photo = read_upload(image, s.max_upload_bytes, s.max_pixels)
    box = box_of([box_x, box_y, box_w, box_h], photo)
    if state.matcher is None:
        raise Problem(503, "no gallery index is loaded: set REID_SERVE_INDEX", kind="no-index")
    started = time.perf_counter()
    with state.match_slots:
        located = box is None and s.locate
        if located:  # a whole photo: crop it to the flank the model finds (reid.boxhead)
            box = state.matcher.locate(photo.pixels)
            located = box is not None
        result = state.matcher.match(
            cropped(photo, box),
            side=None if side == "unknown" else side,
            species=species,
            organisations=scope.match,
            top=top,
        )
    state.metrics.match_seconds.observe(time.perf_counter() - started)
    state.metrics.decisions.labels(result.decision).inc()
    dx, dy = (box[0], box[1]) if box else (0, 0)
    candidates = [
        CandidateOut(
            individual=c.individual, species=c.species, side=c.side, organisation=c.organisation,
            global_score=c.global_score, local_score=c.local_score, fused_score=c.fused_score,
            probability=c.probability, refined=c.refined,
            evidence=[
                EvidenceOut(
                    gallery_id=e.gallery_id, image_url=f"/v1/gallery/{e.gallery_id}/image",
                    bbox=list(e.bbox) if e.bbox else None, global_score=e.global_score,
                    inliers=e.inliers,
                    query_points=[[x + dx, y + dy] for x, y in e.query_points],
                    gallery_points=[[x, y] for x, y in e.gallery_points],
                )
                for e in c.evidence
            ],
        )
        for c in result.candidates
    ]  # fmt: skip
    path = keep(photo, s.media_dir)
    dep = api_deployment(session, place, camera)
    media = add_media(session, dep, path, moment, sha256=photo.sha256, mediatype=photo.mediatype)
    proposed: Individual | None = None
    if result.decision == "known" and result.individual:
        owner = next((c.organisation for c in result.candidates
                      if c.individual == result.individual), None)  # fmt: skip
        ind = visible_individual(session, scope, result.individual, owner)
        if ind is not None and ind.species == species:
            proposed = ind
    height, width = photo.pixels.shape[:2]
    fraction = None if box is None else (box[0] / width, box[1] / height, box[2] / width,
                                         box[3] / height)  # fmt: skip
    sighting = add_sighting(
        session, media, species, side=side, box=fraction, individual=proposed,
        status="proposed", decided_by=caller.who, model_version=result.model_version,
        candidates=[c.model_dump() for c in candidates],
        reason=f"matcher: {result.decision} (P={result.probability:.3f}, "
               f"P(new)={result.new_probability:.3f})",
    )  # fmt: skip
    audit(session, caller, "match", f"sighting:{sighting.code}",
          detail={"decision": result.decision, "individual": result.individual})  # fmt: skip
    return MatchOut(
        sighting=sighting.code,
        review_url=f"/review/{sighting.code}",
        query_image_url=f"/v1/media/{sighting.code}/thumbnail",
        decision=result.decision,  # type: ignore[arg-type]
        individual=result.individual,
        side=result.side,
        searched=result.searched,
        left_probability=result.left_probability,
        box=list(box) if box else None,
        box_located=located,
        probability=result.probability,
        new_probability=result.new_probability,
        candidates=candidates,
        model_version=result.model_version,
    )


def _place(session, caller, site, country, lat, lon):
    """The site row: an existing own site, or a new one made from country + coordinates
    (code ``site`` or one derived from the coordinates)."""
    if country is not None:
        country = check_country_code(country)
        check_place(country, lat, lon)
    elif lat is not None or lon is not None:
        raise Problem(422, "coordinates need the country they are in", field="country")
    if site is not None:
        row = own_site(session, caller, site)
        if row is not None:
            if country is not None and country != row.country:
                raise Problem(422, f"site {site!r} is in {row.country}, not {country}",
                              field="country")  # fmt: skip
            return row
    if country is None:
        raise Problem(422, "give an existing site, or country with lat and lon",
                      field="country" if site is None else "site")  # fmt: skip
    if lat is None or lon is None:
        raise Problem(422, f"a new site needs lat and lon (country {country})", field="lat")
    from sqlalchemy import select

    from reid.registry import Organisation

    if site is None:  # the caller's site there, or a new one with an opaque code
        return site_at(session, caller, country, lat, lon)
    check_no_coordinates(site, "site")
    org = session.scalar(select(Organisation).where(Organisation.id == caller.organisation_id))
    row = own_site(session, caller, site)
    if row is None:
        code = caller_site_code(caller, site)
        row = ensure_site(session, code, country, lat, lon, organisation=org)
        if row.organisation_id != caller.organisation_id:  # an administrator's import
            # worded without saying whose or why: the code is in the caller's own namespace
            raise Problem(422, f"site {site!r} cannot be made: choose another name",
                          field="site")  # fmt: skip
    return row


def api_deployment(session, site, camera: str | None):
    """The deployment a photo sent to ``site`` with ``camera`` is recorded under.

    Its code is ``api:<site id>[:<camera>]``: one code per (site, camera), whatever the
    names hold (site and camera names may contain ``:``, so codes built from names could
    coincide, e.g. site ``a`` with camera ``b`` and site ``a:b``), and short enough for
    the registry (the id's digits, not a name of up to 128 characters). A deployment made
    under the older ``api:<site code>[:<camera>]`` is kept when it is at this site. A code
    held at another site (an administrator's import that chose such a name) is a 422, never
    a photo recorded at someone else's camera."""
    from sqlalchemy import select

    from reid.registry.models import Deployment

    suffix = f":{camera}" if camera else ""
    legacy = session.scalar(select(Deployment).where(Deployment.code == f"api:{site.code}{suffix}"))
    if legacy is not None and legacy.site_id == site.id:
        return legacy
    code = f"api:{site.id}{suffix}"
    dep = session.scalar(select(Deployment).where(Deployment.code == code))
    if dep is not None and dep.site_id != site.id:
        raise Problem(422, f"camera {camera!r} cannot be recorded at this site: choose another "
                      "camera id", field="camera")  # fmt: skip
    return ensure_deployment(session, code, site, camera_id=camera)

