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
from serve.access import Caller, RateLimiter, Scope, authenticate, scope_of, session_of
from serve.metrics import Metrics
from serve.problems import Problem
from serve.settings import Settings

#: Cookie of a review page session (HttpOnly, SameSite=Strict): a random session token,
#: never the API key (:func:`serve.access.start_session`).
SESSION_COOKIE = "reid_session"
#: Methods a session cookie authenticates on /v1 (the review page's photos); anything that
#: writes needs the key in the Authorization header, which no other site can make a
#: browser send.
COOKIE_METHODS = ("GET", "HEAD")


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
            from reid.match import MatchConfig, Matcher
            from serve.calibration import Recalibrator

            self.matcher = Matcher.open(
                settings.index, settings.model, device=settings.device,
                config=MatchConfig(side_threshold=settings.side_threshold),
            )
            metrics.gallery_vectors.set(len(self.matcher.index))
            self.recalibrator = Recalibrator(self)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.auth_failures = RateLimiter(settings.auth_failures_per_minute,
                                         settings.auth_failure_burst)  # fmt: skip
        self.match_slots = threading.BoundedSemaphore(settings.match_workers)
        self.population_slots = threading.BoundedSemaphore(settings.population_workers)
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
    """The bearer key of the Authorization header, if any."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "send the key as 'Authorization: Bearer <key>'",
                          field="Authorization", headers={"WWW-Authenticate": "Bearer"})
        return value.strip()
    return None


def get_caller(request: Request, state: State, session: DbSession) -> Caller:
    token = _token(request)
    cookie = None if token else request.cookies.get(SESSION_COOKIE)
    if not token and not (cookie and request.method in COOKIE_METHODS):
        raise Problem(401, "an API key is required: 'Authorization: Bearer <key>'",
                      field="Authorization", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    check_failures(request, state)
    if token:
        caller = authenticate(session, token)
    else:
        found = session_of(session, cookie)  # type: ignore[arg-type]
        caller = None if found is None else found[0]
    if caller is None:
        failed(request, state)
        raise Problem(401, "the API key is unknown or revoked", field="Authorization",
                      headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    wait = state.limiter.take(caller.key_id)
    if wait:
        state.metrics.rate_limited.inc()
        raise Problem(429, f"rate limit of key {caller.key_id} exceeded; retry in {wait:.0f} s",
                      headers={"Retry-After": f"{wait:.0f}"})  # fmt: skip
    request.state.caller = caller
    return caller


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_failures(request: Request, state: AppState) -> None:
    """A 429 while the client's address has used up its failed key attempts."""
    wait = state.auth_failures.wait(_client(request))
    if wait:
        state.metrics.rate_limited.inc()
        raise Problem(429, f"too many unknown or revoked keys from this address; retry in "
                      f"{wait:.0f} s", headers={"Retry-After": f"{wait:.0f}"})  # fmt: skip


def failed(request: Request, state: AppState) -> None:
    """Count a failed key attempt against the client's address."""
    state.auth_failures.take(_client(request))


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
