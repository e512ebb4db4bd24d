"""What routes depend on: the loaded state, a registry session, the caller and its scope.

The model, gallery index and registry are opened once, in the app's lifespan
(:class:`AppState`); routes get them through ``Annotated`` dependencies. A request is
one registry transaction: committed when the route returns, rolled back when it raises,
so a refused request stores nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from reid.registry import Registry
from serve.access import Caller, RateLimiter, Scope, authenticate, scope_of
from serve.metrics import Metrics
from serve.problems import Problem
from serve.settings import Settings

#: Cookie that the review page keeps the key in (HttpOnly, SameSite=Strict).
KEY_COOKIE = "reid_key"


class AppState:
    """Everything loaded once per process: settings, registry, matcher, limits, jobs."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        from serve.jobs import JobRunner

        self.settings = settings
        self.metrics = metrics
        self.registry = Registry(settings.database_url)
        self.matcher = None
        self.recalibrator = None
        if settings.index is not None:
            from reid.match import Matcher
            from serve.calibration import Recalibrator

            self.matcher = Matcher.open(settings.index, settings.model, device=settings.device)
            metrics.gallery_vectors.set(len(self.matcher.index))
            self.recalibrator = Recalibrator(self)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.match_slots = threading.BoundedSemaphore(settings.match_workers)
        self.gallery_lock = threading.Lock()
        if self.matcher is not None:
            from serve.routers.gallery import reconcile_gallery

            reconcile_gallery(self)  # vectors of enrolments that a crash kept from the registry
        self.jobs = JobRunner(settings.jobs_dir, self)

    @property
    def index_dir(self) -> Path | None:
        return self.settings.index

    def close(self) -> None:
        if self.recalibrator is not None:
            self.recalibrator.close()
        self.jobs.close()
        self.registry.close()


def get_state(request: Request) -> AppState:
    return request.app.state.reid


State = Annotated[AppState, Depends(get_state)]


def get_session(state: State) -> Iterator[Session]:
    with state.registry.session() as session:
        yield session


# scope="function": the transaction commits before the response leaves, so a client that
# follows it (a 303 to the review page, a GET right after a POST) sees the write.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "send the key as 'Authorization: Bearer <key>'",
                          field="Authorization", headers={"WWW-Authenticate": "Bearer"})
        return value.strip()
    return request.cookies.get(KEY_COOKIE)


def get_caller(request: Request, state: State, session: DbSession) -> Caller:
    token = _token(request)
    if not token:
        raise Problem(401, "an API key is required: 'Authorization: Bearer <key>'",
                      field="Authorization", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    caller = authenticate(session, token)
    if caller is None:
        raise Problem(401, "the API key is unknown or revoked", field="Authorization",
                      headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    wait = state.limiter.take(caller.key_id)
    if wait:
        state.metrics.rate_limited.inc()
        raise Problem(429, f"rate limit of key {caller.key_id} exceeded; retry in {wait:.0f} s",
                      headers={"Retry-After": f"{wait:.0f}"})  # fmt: skip
    request.state.caller = caller
    return caller


def require(role: str) -> Callable[..., Caller]:
    """A dependency giving the caller when its role includes ``role``, else 403."""

    def dependency(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if not caller.may(role):
            raise Problem(403, f"role {caller.role} may not do this (needs {role} or above)",
                          kind="forbidden-role")  # fmt: skip
        return caller

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Caller, Depends(require("viewer"))]
Contributor = Annotated[Caller, Depends(require("contributor"))]
Reviewer = Annotated[Caller, Depends(require("reviewer"))]
Admin = Annotated[Caller, Depends(require("admin"))]


def get_scope(session: DbSession, caller: Annotated[Caller, Depends(get_caller)]) -> Scope:
    return scope_of(session, caller)


CallerScope = Annotated[Scope, Depends(get_scope)]
