"""Errors as RFC 9457 problem details: ``application/problem+json`` naming the field.

Every error answer of the API has the same body (:class:`ProblemBody`): ``type``,
``title``, ``status``, ``detail`` (one line a person can act on), ``field`` (the request
field at fault, when there is one) and ``errors`` (every invalid field, for validation
failures). Routes raise :class:`Problem`; request validation errors, library errors
(:class:`~reid.errors.ReidError`) and Starlette's HTTP errors are turned into the same
shape by the handlers installed by :func:`install`.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reid.errors import ImageError, ReidError

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://bigcat-reid.org/problems/"


class FieldError(BaseModel):
    """One invalid request field."""

    field: str = Field(description="Where: e.g. 'country', 'image', 'lat'.")
    message: str = Field(description="What is wrong with it.")


class ProblemBody(BaseModel):
    """An error answer (RFC 9457 problem details)."""

    type: str = Field(description="URI naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong here, in one line.")
    field: str | None = Field(None, description="The request field at fault, if any.")
    errors: list[FieldError] = Field(
        default_factory=list, description="Every invalid field (validation errors)."
    )


class Problem(Exception):
    """Raise in a route to answer ``status`` with a problem body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.kind = kind or _slug(HTTPStatus(status).phrase)
        self.headers = headers
        self.errors = errors or ([FieldError(field=field, message=detail)] if field else [])

    def body(self) -> ProblemBody:
        return ProblemBody(
            type=TYPE_BASE + self.kind,
            title=HTTPStatus(self.status).phrase,
            status=self.status,
            detail=self.detail,
            field=self.field,
            errors=self.errors,
        )

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body().model_dump(),
            status_code=self.status,
            media_type=MEDIA_TYPE,
            headers=self.headers,
        )


def _slug(text: str) -> str:
    return "-".join(text.lower().replace("'", "").split())


def image_problem(e: ImageError, field: str = "image") -> Problem:
    """The 4xx for an upload that is not a usable image: 413 when too big, else 415/422."""
    text = str(e)
    if "byte limit" in text or "bytes, over" in text:
        return Problem(413, text, field=field, kind="upload-too-large")
    if "pixels" in text and ("limit" in text or "bomb" in text):
        return Problem(413, text, field=field, kind="too-many-pixels")
    if "unsupported image format" in text or "not an image" in text:
        return Problem(415, text, field=field, kind="unsupported-image")
    return Problem(422, text, field=field, kind="corrupt-image")


def responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict]:
    """OpenAPI ``responses`` documenting these error statuses with the problem body; a
    ``(status, description)`` pair says what that status means on this route."""
    out: dict[int | str, dict] = {}
    for item in statuses:
        s, text = item if isinstance(item, tuple) else (item, None)
        out[s] = {
            "model": ProblemBody,
            "description": text or _DESCRIPTIONS.get(s, HTTPStatus(s).phrase),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
    return out


_DESCRIPTIONS = {
    400: "Malformed request.",
    401: "No API key, or an unknown or revoked one (send `Authorization: Bearer <key>`).",
    403: "The key's role or organisation may not do this.",
    404: "No such resource, or not one the key's organisation may see.",
    409: "Conflicts with the current state (e.g. a job that is not done yet).",
    413: "The upload has too many bytes or too many pixels (decompression bomb).",
    415: "The upload is not an image in an accepted format (JPEG, PNG, WebP, TIFF, BMP).",
    422: "A field is invalid; `field` names it.",
    429: "Rate limit of the key exceeded; retry after `Retry-After` seconds.",
    503: "The service is not ready for this (e.g. no gallery index configured).",
}

#: Every route may answer these.
COMMON = (401, 403, 422, 429)


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem body."""

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(field=_loc(tuple(e["loc"])), message=e["msg"]) for e in exc.errors()]
        first = errors[0] if errors else FieldError(field="request", message="invalid request")
        detail = f"{first.field}: {first.message}"
        problem = Problem(422, detail, field=first.field, kind="invalid-field", errors=errors)
        return problem.response()

    @app.exception_handler(ReidError)
    async def _reid(_request: Request, exc: ReidError) -> JSONResponse:
        if isinstance(exc, ImageError):
            return image_problem(exc).response()
        return Problem(422, str(exc), kind="invalid-input").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return Problem(exc.status_code, detail, headers=getattr(exc, "headers", None)).response()
