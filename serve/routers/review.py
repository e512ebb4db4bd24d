"""The review page: the query photo beside the best candidates' images with the matched
keypoints drawn, the probabilities, and buttons to confirm, name a new individual or
reject. Server-rendered (Jinja2 + SVG), no front-end build, no script.

Signing in exchanges the pasted key for a session: the cookie (HttpOnly,
SameSite=Strict) holds a random session token, never the key. Every form that changes
something (sign-in, sign-out, decisions) is refused unless it comes from this service's
own origin (the ``Origin`` header, else ``Referer``: a page on another port of the same
host or on a sibling subdomain is another origin, though the same "site" for SameSite)
and carries the CSRF token of the session (sign-in: of the login form). Pages are sent
with a Content-Security-Policy and ``X-Frame-Options: DENY`` (see :mod:`serve.app`)."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from reid.registry import Site, decisions_of
from serve.access import (
    SESSION_HOURS,
    Caller,
    authenticate,
    end_session,
    scope_of,
    session_of,
    start_session,
)
from serve.deps import SESSION_COOKIE, DbSession, State, _token, check_failures, failed
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
#: Cookie of the login form's CSRF token (double submit; the Origin check does the rest).
LOGIN_COOKIE = "reid_login"


def _caller(request: Request, state, session) -> tuple[Caller | None, object | None]:
    """(caller, review session row): by the Authorization header (no session), else by the
    session cookie; (None, None) when neither is valid."""
    try:
        token = _token(request)
    except Problem:
        return None, None
    cookie = None if token else request.cookies.get(SESSION_COOKIE)
    if not token and not cookie:
        return None, None
    check_failures(request, state)
    found = ((authenticate(session, token), None) if token
             else session_of(session, cookie) or (None, None))  # type: ignore[arg-type]
    caller, row = found
    if caller is None:
        failed(request, state)
        return None, None
    if state.limiter.take(caller.key_id):
        raise Problem(429, "rate limit exceeded; retry shortly", headers={"Retry-After": "5"})
    return caller, row


def same_origin(request: Request, state) -> bool:
    """Whether a form was posted by a page of this service: its Origin (else Referer) is
    the request's own scheme-less host:port or one of the trusted origins."""
    source = request.headers.get("origin")
    if not source or source == "null":
        source = request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}"
    trusted = {o.rstrip("/") for o in state.settings.trusted_origins}
    host = request.headers.get("host", "")
    return bool(parts.netloc) and (parts.netloc == host or origin in trusted)


def _check_form(request: Request, state, sent: str | None, expected: str | None) -> None:
    if not same_origin(request, state):
        raise Problem(403, "this form must be sent from the review page of this service",
                      kind="cross-origin")  # fmt: skip
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise Problem(403, "the form is stale or forged: reload the page and try again",
                      kind="csrf")  # fmt: skip


def _login(request: Request, message: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(request, "login.html",
                                          {"message": message, "csrf": token},
                                          status_code=status)  # fmt: skip
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/review",
                        secure=request.url.scheme == "https", max_age=3600)  # fmt: skip
    return response


@router.get("", response_class=HTMLResponse)
def index(request: Request, state: State, session: DbSession) -> HTMLResponse:
    """Proposed sightings of the caller's organisation waiting for a decision."""
    caller, row = _caller(request, state, session)
    if caller is None:
        return _login(request)
    scope = scope_of(session, caller)
    own = Site.organisation_id == caller.organisation_id
    pending, _ = visible_sightings(session, scope, status="proposed", where=own, limit=200,
                                   newest_first=True)  # fmt: skip
    return templates.TemplateResponse(request, "queue.html",
                                      {"caller": caller, "pending": pending[::-1],
                                       "csrf": row.csrf if row else None})  # fmt: skip


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, state: State, session: DbSession, key: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Check a pasted key and start a session (the cookie holds the session, not the key)."""
    _check_form(request, state, csrf, request.cookies.get(LOGIN_COOKIE))
    check_failures(request, state)
    caller = authenticate(session, key.strip())
    if caller is None:
        failed(request, state)
        return _login(request, "That key is unknown or revoked.", 401)
    token, _row = start_session(session, caller)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https",
                        max_age=SESSION_HOURS * 3600)  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/review")
    response.delete_cookie("reid_key")  # the API key itself, kept there before
    return response  # type: ignore[return-value]


@router.post("/logout", response_class=HTMLResponse)
def logout(
    request: Request, state: State, session: DbSession,
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """End the session."""
    caller, row = _caller(request, state, session)
    if row is not None:
        _check_form(request, state, csrf, row.csrf)
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/review", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response  # type: ignore[return-value]


@router.get("/{code}", response_class=HTMLResponse)
def page(code: str, request: Request, state: State, session: DbSession) -> HTMLResponse:
    """The review page of one sighting."""
    caller, row = _caller(request, state, session)
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
        and owner == caller.organisation and row is not None,
        "csrf": row.csrf if row else None, "query_url": f"/v1/media/{code}/thumbnail?size="
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
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """A button of the review page: the same decision as POST /v1/sightings/{code}/decision
    (from this service's own pages, with the session's CSRF token)."""
    if not same_origin(request, state):
        raise Problem(403, "this form must be sent from the review page of this service",
                      kind="cross-origin")  # fmt: skip
    caller, row = _caller(request, state, session)
    if caller is None or row is None:  # a browser form: a session, never a bare key
        return _login(request, status=401)
    _check_form(request, state, csrf, row.csrf)
    if not caller.may("reviewer"):
        raise Problem(403, f"role {caller.role} may not decide (needs reviewer)")
    try:
        body = DecisionIn(action=action, individual=individual or None, reason=reason or None)
    except ValidationError as e:
        raise Problem(422, e.errors()[0]["msg"], field=str(e.errors()[0]["loc"][0])) from None
    apply_decision(state, session, caller, scope_of(session, caller), code, body)
    return RedirectResponse(f"/review/{code}", status_code=303)  # type: ignore[return-value]
