"""Photos of sightings as thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from serve.deps import CallerScope, DbSession, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.records import visible_sighting
from serve.routers.gallery import CACHE
from serve.uploads import box_pixels, thumbnail

router = APIRouter(prefix="/v1/media", tags=["media"])


@router.get("/{sighting}/thumbnail", response_class=Response, responses={
    200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."},
    **responses(*COMMON, 404)})  # fmt: skip
def sighting_thumbnail(
    sighting: str,
    state: State,
    session: DbSession,
    caller: Viewer,
    scope: CallerScope,
    crop: Annotated[bool, Query(description="Only the animal's box, when there is one.")] = True,
    size: Annotated[int | None, Query(ge=32, le=2048, description="Longer side (px).")] = None,
) -> Response:
    """The photo of a sighting the caller may see, as a JPEG thumbnail."""
    sig, _owner = visible_sighting(session, scope, sighting)
    path = sig.media.file_path
    box = None
    if crop and sig.bbox_x is not None:
        try:  # fractions of the photo as decoded (EXIF-rotated), not as stored
            box = box_pixels(path, (sig.bbox_x, sig.bbox_y, sig.bbox_w, sig.bbox_h))
        except OSError:
            raise Problem(404, f"the photo of sighting {sighting} is not on this server",
                          field="sighting", kind="not-found") from None  # fmt: skip
    try:
        data = thumbnail(path, box, size or state.settings.thumbnail_px)
    except Exception:
        raise Problem(404, f"the photo of sighting {sighting} is not on this server",
                      field="sighting", kind="not-found") from None  # fmt: skip
    return Response(data, media_type="image/jpeg", headers=CACHE)
