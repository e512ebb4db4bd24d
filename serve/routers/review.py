"""The review page: the query photo beside the best candidates' images with the matched
keypoints drawn, the probabilities, and buttons to confirm, name a new individual or
reject. Server-rendered (Jinja2 + SVG), no front-end build; the key is kept in an
HttpOnly, SameSite=Strict cookie after pasting it once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from reid.registry import decisions_of
from serve.access import Caller, authenticate, scope_of
from serve.deps import KEY_COOKIE, DbSession, State, _token
from serve.problems import Problem
from serve.records import visible_sighting, visible_sightings
from serve.routers.sightings import apply_decision
from serve.schemas import DecisionIn
from serve.uploads import box_pixels, scale_of

router = APIRouter(prefix="/review", tags=["review page"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
#: Height of the images in the keypoint drawings (px).
ROW_PX = 220
GAP_PX = 24


def _caller(request: Request, state, session) -> Caller | None:
    try:
        token = _token(request)
    except Problem:
        return None
    caller = authenticate(session, token) if token else None
    if caller is not None and state.limiter.take(caller.key_id):
        raise Problem(429, "rate limit exceeded; retry shortly", headers={"Retry-After": "5"})
    return caller


def _login(request: Request, message: str | None = None, status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"message": message},
                                      status_code=status)  # fmt: skip


@router.get("", response_class=HTMLResponse)
def index(request: Request, state: State, session: DbSession) -> HTMLResponse:
    """Proposed sightings of the caller's organisation waiting for a decision."""
    caller = _caller(request, state, session)
    if caller is None:
        return _login(request)
    scope = scope_of(session, caller)
    pending, _ = visible_sightings(session, scope, status="proposed")
    pending = [s for s in pending if s.organisation == caller.organisation]
    return templates.TemplateResponse(request, "queue.html",
                                      {"caller": caller, "pending": pending[-200:]})  # fmt: skip


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, state: State, session: DbSession, key: Annotated[str, Form()]
) -> HTMLResponse:
    """Check a pasted key and keep it in a cookie."""
    if authenticate(session, key.strip()) is None:
        return _login(request, "That key is unknown or revoked.", 401)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(KEY_COOKIE, key.strip(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600)  # fmt: skip
    return response  # type: ignore[return-value]


@router.get("/{code}", response_class=HTMLResponse)
def page(code: str, request: Request, state: State, session: DbSession) -> HTMLResponse:
    """The review page of one sighting."""
    caller = _caller(request, state, session)
    if caller is None:
        return _login(request, status=401)
    scope = scope_of(session, caller)
    sig, owner = visible_sighting(session, scope, code)
    trail = decisions_of(session, sig)
    proposal = next((d for d in trail if d.action == "propose"), None)
    candidates = (proposal.candidates or []) if proposal else []
    query_box = _query_box(sig)
    q_scale, q_w, q_h = scale_of(sig.media.file_path, query_box, ROW_PX * 4)
    q_factor = ROW_PX / q_h
    drawings = []
    for c in candidates[:3]:
        ev = c["evidence"][0] if c.get("evidence") else None
        drawings.append(_drawing(state, c, ev, query_box, q_scale * q_factor, q_w * q_factor))
    return templates.TemplateResponse(request, "review.html", {
        "caller": caller, "sighting": sig, "owner": owner, "trail": trail,
        "proposal": proposal, "drawings": drawings, "may_decide": caller.may("reviewer")
        and owner == caller.organisation, "query_url": f"/v1/media/{code}/thumbnail?size="
        f"{ROW_PX * 4}", "query_w": round(q_w * q_factor), "row": ROW_PX, "gap": GAP_PX,
    })  # fmt: skip


def _query_box(sig) -> tuple | None:
    if sig.bbox_x is None:
        return None
    return box_pixels(sig.media.file_path, (sig.bbox_x, sig.bbox_y, sig.bbox_w, sig.bbox_h))


def _drawing(state, cand: dict, ev: dict | None, qbox, q_factor: float, q_width: float) -> dict:
    """The SVG geometry of one candidate: both images in a row, lines between keypoints."""
    out = {"candidate": cand, "evidence": ev, "lines": [], "g_url": None, "g_w": 0}
    if ev is None or state.matcher is None or ev["gallery_id"] not in state.matcher.index:
        return out
    entry = state.matcher.index.entry(ev["gallery_id"])
    g_scale, g_w, g_h = scale_of(entry.image, entry.bbox, ROW_PX * 4)
    g_factor = ROW_PX / g_h
    qx0, qy0 = (qbox[0], qbox[1]) if qbox else (0.0, 0.0)
    gx0, gy0 = (entry.bbox[0], entry.bbox[1]) if entry.bbox else (0, 0)
    left = q_width + GAP_PX
    for (qx, qy), (gx, gy) in zip(ev["query_points"], ev["gallery_points"], strict=False):
        out["lines"].append((
            round((qx - qx0) * q_factor, 1), round((qy - qy0) * q_factor, 1),
            round(left + (gx - gx0) * g_scale * g_factor, 1),
            round((gy - gy0) * g_scale * g_factor, 1),
        ))  # fmt: skip
    out.update(g_url=f"{ev['image_url']}", g_w=round(g_w * g_factor), left=round(left))
    return out


@router.post("/{code}/decision", response_class=HTMLResponse)
def decide(
    code: str,
    request: Request,
    state: State,
    session: DbSession,
    action: Annotated[str, Form()],
    individual: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """A button of the review page: the same decision as POST /v1/sightings/{code}/decision."""
    caller = _caller(request, state, session)
    if caller is None:
        return _login(request, status=401)
    if not caller.may("reviewer"):
        raise Problem(403, f"role {caller.role} may not decide (needs reviewer)")
    try:
        body = DecisionIn(action=action, individual=individual or None, reason=reason or None)
    except ValidationError as e:
        raise Problem(422, e.errors()[0]["msg"], field=str(e.errors()[0]["loc"][0])) from None
    apply_decision(state, session, caller, scope_of(session, caller), code, body)
    return RedirectResponse(f"/review/{code}", status_code=303)  # type: ignore[return-value]
