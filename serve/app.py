"""The FastAPI app factory: ``create_app(settings)``; ``reid serve`` runs it with uvicorn.

The model, the gallery index and the registry are opened in the lifespan (never at
import), once per process. Routes are versioned (``/v1/...``), one router per resource;
every error is a problem-details body (:mod:`serve.problems`); ``/docs`` and
``/openapi.json`` document every field, error and the bearer-key scheme.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from reid import __version__
from serve import problems
from serve.metrics import Metrics, MetricsMiddleware
from serve.settings import Settings

DESCRIPTION = """\
Re-identify tigers and leopards from flank photos, record sightings and decisions, and
follow cross-border movements.

Send an API key as `Authorization: Bearer <key>` (keys: `reid keys create --org ORG
--role ROLE [--precise-location]`). Roles: **viewer** (read), **contributor** (+ match,
enrol, bulk jobs), **reviewer** (+ decide sightings), **admin** (+ sharing agreements,
audit log). Data belongs to its organisation; partners see what an agreement shares.
Exact coordinates need the precise-location permission (and the owner's agreement);
everyone else gets 0.25° grid-cell centres. Errors are RFC 9457 problem details naming
the field at fault.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app serving ``settings`` (default: from the environment)."""
    from serve.deps import AppState
    from serve.routers import (
        admin,
        gallery,
        health,
        individuals,
        jobs,
        match,
        media,
        population,
        review,
    )
    from serve.routers import sightings as sightings_router

    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.reid = AppState(settings, metrics)
        try:
            yield
        finally:
            app.state.reid.close()

    app = FastAPI(
        title="bigcat-reid matching API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "match", "description": "Identify a flank photo."},
            {"name": "sightings", "description": "Sightings and their decisions."},
            {"name": "individuals", "description": "Known animals and their movements."},
            {"name": "gallery", "description": "Enrolled flank images."},
            {"name": "media", "description": "Photos."},
            {"name": "jobs", "description": "Season bulk matching."},
            {"name": "population", "description": "SCR density per country and jointly."},
            {"name": "administration", "description": "Sharing and audit."},
            {"name": "service", "description": "Health and metrics."},
        ],
    )
    problems.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    for r in (health, match, sightings_router, individuals, gallery, media, jobs, admin, review,
              population):  # fmt: skip
        app.include_router(r.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    _bearer_scheme(app)
    return app


#: The review page's policy: its own images, styles and forms only, no script, no framing.
REVIEW_CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; connect-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip


class SecurityHeadersMiddleware:
    """Headers against framing (clickjacking), type sniffing and leaking referrers on every
    answer; the strict Content-Security-Policy on the review page (``/docs`` loads the
    Swagger UI from a CDN, so it gets the others only)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        review = scope["path"] == "/review" or scope["path"].startswith("/review/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin")]  # fmt: skip
                if review:
                    headers += [(b"content-security-policy", REVIEW_CSP.encode()),
                                (b"cache-control", b"no-store")]  # fmt: skip
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _bearer_scheme(app: FastAPI) -> None:
    """Document the bearer key on every /v1 route that needs one."""
    from fastapi.openapi.utils import get_openapi

    open_paths = {"/v1/health", "/metrics"}

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes, tags=app.openapi_tags)  # fmt: skip
        schema.setdefault("components", {})["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "An organisation's API key (bcr_<id>_<secret>)."}
        }  # fmt: skip
        for path, ops in schema["paths"].items():
            if path in open_paths:
                continue
            for op in ops.values():
                op["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
