"""The gallery: enrol photos of known individuals; their images for the evidence."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from sqlalchemy import event, select

from reid.index import GalleryEntry
from reid.registry import Organisation, Sighting, add_individual
from reid.verify import extract
from serve.access import Caller, audit
from serve.deps import AppState, CallerScope, Contributor, DbSession, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.records import visible_individual
from serve.schemas import CODE_PATTERN, GalleryOut
from serve.uploads import box_of, check_no_coordinates, cropped, keep, read_upload, thumbnail

router = APIRouter(prefix="/v1/gallery", tags=["gallery"])
CACHE = {"Cache-Control": "private, max-age=3600"}
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}}


def _matcher(state: AppState):
    if state.matcher is None or state.index_dir is None:
        raise Problem(503, "no gallery index is loaded: set REID_SERVE_INDEX", kind="no-index")
    return state.matcher


def add_to_gallery(
    state: AppState, caller: Caller, pixels, entry: GalleryEntry, session=None
) -> int:
    """Embed, cache keypoints, add and save the index (atomically) under the gallery lock;
    then start a background refit of the match calibration if the gallery has grown
    enough since the last one (:mod:`serve.calibration`).

    Idempotent: the same crop of the same photo (content-addressed path) of the same
    individual, side and organisation already in the gallery is not added again; its id
    is returned. The index is saved before the request's registry transaction commits, so
    with ``session`` the vector is taken out again when that transaction rolls back; a
    vector left by a crash in between is removed at the next start-up
    (:func:`reconcile_gallery`)."""
    matcher = _matcher(state)
    with state.gallery_lock:
        same = _same_entry(matcher.index, entry)
    if same is not None:
        return same
    vector = matcher.embed([pixels])
    features = extract(pixels, matcher.local)
    with state.gallery_lock:
        same = _same_entry(matcher.index, entry)
        if same is not None:
            return same
        (gid,) = matcher.index.add(vector, [entry])
        matcher.features.put(gid, features)
        matcher.index.save(state.index_dir)
    if session is not None:
        event.listen(session, "after_rollback", lambda _s: withdraw(state, [gid]), once=True)
    state.metrics.gallery_vectors.set(len(matcher.index))
    if state.recalibrator is not None:
        state.recalibrator.notify()
    return gid


def _same_entry(index, entry: GalleryEntry) -> int | None:
    box = tuple(entry.bbox) if entry.bbox else None
    for gid, e in index.entries().items():
        if (e.image, e.individual, e.species, e.side, e.organisation) == (
            entry.image, entry.individual, entry.species, entry.side, entry.organisation
        ) and (tuple(e.bbox) if e.bbox else None) == box:  # fmt: skip
            return gid
    return None


def withdraw(state: AppState, gids: list[int]) -> int:
    """Take these vectors out of the gallery and save it; returns how many went."""
    matcher = state.matcher
    if matcher is None or not gids:
        return 0
    with state.gallery_lock:
        n = matcher.index.remove(gids)
        if n:
            matcher.index.save(state.index_dir)
    state.metrics.gallery_vectors.set(len(matcher.index))
    return n


def reconcile_gallery(state: AppState) -> int:
    """At start-up: remove the vectors enrolled through the API (their photo is in the
    media folder) whose enrolment the registry does not hold (no ``gallery.enrol`` audit
    entry, written in the enrolment's transaction): the index was saved, then the process
    died before the registry committed. Returns how many were removed."""
    import os

    from reid.registry.access import AuditEntry

    matcher = state.matcher
    if matcher is None:
        return 0
    media = {str(state.settings.media_dir) + os.sep,
             str(state.settings.media_dir.resolve()) + os.sep}  # fmt: skip
    api = [g for g, e in matcher.index.entries().items()
           if any(e.image.startswith(m) for m in media)]  # fmt: skip
    if not api:
        return 0
    with state.registry.session() as s:
        recorded = set(s.scalars(
            select(AuditEntry.resource).where(AuditEntry.action == "gallery.enrol")))  # fmt: skip
    orphans = [g for g in api if f"gallery:{g}" not in recorded]
    if orphans:
        import logging

        logging.getLogger("serve.gallery").warning(
            "removing %d gallery vector(s) whose enrolment never reached the registry: %s",
            len(orphans), orphans[:20])  # fmt: skip
    return withdraw(state, orphans)


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
    if ind is None:  # new for the caller's organisation (codes are per organisation)
        check_no_coordinates(individual, "individual")
        org = session.get(Organisation, caller.organisation_id)
        ind = add_individual(session, individual, species, organisation=org)
    elif ind.species != species:
        raise Problem(422, f"individual {individual} is a {ind.species}", field="species")
    photo = read_upload(image, s.max_upload_bytes, s.max_pixels)
    box = box_of([box_x, box_y, box_w, box_h], photo)
    path = keep(photo, s.media_dir)
    entry = GalleryEntry(str(path), ind.code, species, side, caller.organisation, box)
    gid = add_to_gallery(state, caller, cropped(photo, box), entry, session)
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
    gid = add_to_gallery(state, caller, pixels, entry, session)
    audit(session, caller, "gallery.enrol", f"gallery:{gid}",
          detail={"individual": code, "sighting": sig.code})  # fmt: skip
    return gid


def unenrol_sighting(state: AppState, session, caller: Caller, sig: Sighting, code: str) -> None:
    """After a correction commits: take the photo of ``sig`` enrolled as ``code`` by the
    caller's organisation out of the gallery."""
    if state.matcher is None:
        return
    gids = [g for g, e in state.matcher.index.entries().items()
            if e.image == sig.media.file_path and e.individual == code
            and e.organisation == caller.organisation]  # fmt: skip
    if gids:
        audit(session, caller, "gallery.withdraw", f"sighting:{sig.code}",
              detail={"individual": code, "gallery_ids": gids})  # fmt: skip
        event.listen(session, "after_commit", lambda _s: withdraw(state, gids), once=True)


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
