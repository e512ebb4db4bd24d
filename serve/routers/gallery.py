"""The gallery: enrol photos of known individuals; their images for the evidence."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from sqlalchemy import select

from reid.index import GalleryEntry
from reid.registry import Individual, Organisation, Sighting, add_individual
from reid.verify import extract
from serve.access import Caller, audit
from serve.deps import AppState, CallerScope, Contributor, DbSession, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.records import visible_individual
from serve.schemas import CODE_PATTERN, GalleryOut
from serve.uploads import box_of, cropped, keep, read_upload, thumbnail

router = APIRouter(prefix="/v1/gallery", tags=["gallery"])
CACHE = {"Cache-Control": "private, max-age=3600"}
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}}


def _matcher(state: AppState):
    if state.matcher is None or state.index_dir is None:
        raise Problem(503, "no gallery index is loaded: set REID_SERVE_INDEX", kind="no-index")
    return state.matcher


def add_to_gallery(
    state: AppState, caller: Caller, pixels, entry: GalleryEntry
) -> int:
    """Embed, cache keypoints, add and save the index (atomically) under the gallery lock;
    then start a background refit of the match calibration if the gallery has grown
    enough since the last one (:mod:`serve.calibration`)."""
    matcher = _matcher(state)
    vector = matcher.embed([pixels])
    features = extract(pixels, matcher.config.sift)
    with state.gallery_lock:
        (gid,) = matcher.index.add(vector, [entry])
        matcher.features.put(gid, features)
        matcher.index.save(state.index_dir)
    state.metrics.gallery_vectors.set(len(matcher.index))
    if state.recalibrator is not None:
        state.recalibrator.notify()
    return gid


@router.post("", response_model=GalleryOut, status_code=201,
             responses=responses(*COMMON, 404, 413, 415, 503))  # fmt: skip
def enrol(
    state: State,
    session: DbSession,
    caller: Contributor,
    scope: CallerScope,
    image: Annotated[UploadFile, File(description="A photo of the flank.")],
    individual: Annotated[
        str, Form(min_length=1, max_length=128, pattern=CODE_PATTERN,
                  description="Individual code (registered for the caller's organisation "
                  "when new).")
    ],  # fmt: skip
    species: Annotated[Literal["tiger", "leopard"], Form(description="Species.")],
    side: Annotated[Literal["left", "right"], Form(description="The flank shown.")],
    box_x: Annotated[int | None, Form(ge=0, description="Box left edge (px).")] = None,
    box_y: Annotated[int | None, Form(ge=0, description="Box top edge (px).")] = None,
    box_w: Annotated[int | None, Form(ge=1, description="Box width (px).")] = None,
    box_h: Annotated[int | None, Form(ge=1, description="Box height (px).")] = None,
) -> GalleryOut:
    """Add a photo of an individual's flank to the gallery, owned by the caller's
    organisation. The individual must be the caller's to see (or new: it is registered).
    The match calibration is refitted in the background when the gallery has grown enough
    since its last fit (``recalibrating`` says so; matches use the previous calibration
    until the new one is swapped in)."""
    s = state.settings
    _matcher(state)
    ind = visible_individual(session, scope, individual)
    if ind is None:
        if session.scalar(select(Individual.id).where(Individual.code == individual)):
            raise Problem(422, f"unknown individual {individual!r}", field="individual")
        org = session.get(Organisation, caller.organisation_id)
        ind = add_individual(session, individual, species, organisation=org)
    elif ind.species != species:
        raise Problem(422, f"individual {individual} is a {ind.species}", field="species")
    photo = read_upload(image, s.max_upload_bytes, s.max_pixels)
    box = box_of([box_x, box_y, box_w, box_h], photo)
    path = keep(photo, s.media_dir)
    entry = GalleryEntry(str(path), ind.code, species, side, caller.organisation, box)
    gid = add_to_gallery(state, caller, cropped(photo, box), entry)
    audit(session, caller, "gallery.enrol", f"gallery:{gid}", detail={"individual": ind.code})
    return GalleryOut(gallery_id=gid, individual=ind.code, species=species, side=side,
                      organisation=caller.organisation, gallery_size=len(state.matcher.index),
                      recalibrating=state.recalibrator is not None
                      and state.recalibrator.pending)  # fmt: skip


def enrol_sighting(state: AppState, session, caller: Caller, sig: Sighting, code: str) -> int:
    """Add a decided sighting's photo (its box) to the gallery as ``code``."""
    if sig.side not in ("left", "right"):
        raise Problem(422, "only a photo of a known side can be enrolled", field="enrol")
    from reid.images import load_image

    pixels = load_image(sig.media.file_path)
    box = None
    if sig.bbox_x is not None:
        h, w = pixels.shape[:2]
        box = (round(sig.bbox_x * w), round(sig.bbox_y * h), max(1, round(sig.bbox_w * w)),
               max(1, round(sig.bbox_h * h)))  # fmt: skip
        x, y, bw, bh = box
        pixels = pixels[y : y + bh, x : x + bw]
    entry = GalleryEntry(sig.media.file_path, code, sig.species, sig.side, caller.organisation, box)
    gid = add_to_gallery(state, caller, pixels, entry)
    audit(session, caller, "gallery.enrol", f"gallery:{gid}",
          detail={"individual": code, "sighting": sig.code})  # fmt: skip
    return gid


@router.get("/{gallery_id}/image", response_class=Response, responses={**JPEG,
            **responses(*COMMON, 404, 503)})  # fmt: skip
def image(gallery_id: int, state: State, caller: Viewer, scope: CallerScope) -> Response:
    """A thumbnail of a gallery crop the caller may match against (the candidates' images)."""
    matcher = _matcher(state)
    if gallery_id not in matcher.index:
        raise Problem(404, f"no gallery image {gallery_id}", field="gallery_id", kind="not-found")
    entry = matcher.index.entry(gallery_id)
    if entry.organisation not in scope.match:
        raise Problem(404, f"no gallery image {gallery_id}", field="gallery_id", kind="not-found")
    data = thumbnail(entry.image, entry.bbox, state.settings.thumbnail_px)
    return Response(data, media_type="image/jpeg", headers=CACHE)
