"""API keys, roles, sharing scope, the audit log and rate limits.

A key is ``bcr_<key id>_<secret>``: the key id is public (it names the key in lists and
in the audit log), the secret is 256 random bits of which only the SHA-256 is stored
(:class:`reid.registry.access.ApiKey`). A key belongs to one organisation and has one
role (:data:`~reid.registry.access.ROLES`, each including the ones before it) and,
independently, the precise-location permission.

What a caller may touch is its :class:`Scope`: its own organisation's data, plus what
other organisations share with it by :class:`~reid.registry.access.SharingAgreement`
(match against their gallery; see their sightings, individuals and movements; see their
exact coordinates, only for keys with the permission). Everything else does not exist
for the caller (404, never 403, so that a foreign resource's existence does not leak).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from reid.errors import ReidError
from reid.privacy import Viewer, generalise
from reid.registry.access import ROLES, ApiKey, AuditEntry, ReviewSession, SharingAgreement
from reid.registry.models import Organisation
from reid.registry.services import now

KEY_PREFIX = "bcr"


@dataclass(frozen=True)
class Caller:
    """The holder of a valid API key."""

    key_id: str
    organisation: str  # organisation code
    organisation_id: int
    role: str
    precise_location: bool

    def may(self, role: str) -> bool:
        """Whether this caller's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def who(self) -> str:
        """How the caller appears in decision trails: ``key:<id>@<organisation>``."""
        return f"key:{self.key_id}@{self.organisation}"


@dataclass(frozen=True)
class Scope:
    """Organisations whose data a caller may match against, see, and see exactly."""

    match: frozenset[str]
    view: frozenset[str]
    precise: frozenset[str]
    own: str = ""  # the caller's organisation (first choice for a code several use)

    def locate(self, owner: str | None, lat: float, lon: float) -> tuple[float, float, bool]:
        """(lat, lon, exact?) of a point owned by ``owner`` as this caller may see it."""
        if owner is not None and owner in self.precise:
            return lat, lon, True
        glat, glon = generalise(lat, lon)
        return glat, glon, False

    def viewer(self, owner: str | None) -> Viewer:
        """A :class:`~reid.privacy.Viewer` for data owned by ``owner``."""
        return Viewer(organisation=owner, precise_location=owner in self.precise)


# -- keys ----------------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session,
    organisation: str,
    role: str,
    precise_location: bool = False,
    label: str | None = None,
    country: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``organisation`` (created when new, which needs ``country``); returns
    the row and the full key, which is shown once and never stored."""
    if role not in ROLES:
        raise ReidError(f"role {role!r} is not one of {', '.join(ROLES)}")
    org = session.scalar(select(Organisation).where(Organisation.code == organisation))
    if org is None:
        if country is None:
            raise ReidError(
                f"organisation {organisation!r} is not in the registry: give --country to "
                "create it"
            )
        from reid.registry.services import ensure_organisation

        org = ensure_organisation(session, organisation, country=country)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        key_id=key_id,
        secret_sha256=_digest(secret),
        organisation=org,
        role=role,
        precise_location=precise_location,
        label=label,
        created_at=now(),
    )
    session.add(row)
    session.flush()
    audit(session, None, "key.create", f"key:{key_id}",
          detail={"organisation": organisation, "role": role, "precise": precise_location})
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """End a key (it stays listed, with when it was revoked)."""
    key_id = key_id.removeprefix(f"{KEY_PREFIX}_").split("_")[0]
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None:
        raise ReidError(f"no API key {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = now()
        audit(session, None, "key.revoke", f"key:{key_id}")
    return row


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (secrets are not stored, so not shown)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def authenticate(session: Session, token: str) -> Caller | None:
    """The caller a full key belongs to, or None for a malformed, unknown or revoked key."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == parts[1]))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(parts[2])):
        return None
    return _caller_of(row)


# -- review page sessions ------------------------------------------------------------

#: How long a review page sign-in lasts.
SESSION_HOURS = 12


def _caller_of(row: ApiKey) -> Caller:
    return Caller(
        key_id=row.key_id,
        organisation=row.organisation.code,
        organisation_id=row.organisation_id,
        role=row.role,
        precise_location=bool(row.precise_location),
    )


def start_session(session: Session, caller: Caller) -> tuple[str, ReviewSession]:
    """A new review page session of ``caller``'s key: (the cookie's token, the row). Only
    the token's SHA-256 is stored; the row holds the session's CSRF token."""
    from datetime import timedelta

    key = session.scalar(select(ApiKey).where(ApiKey.key_id == caller.key_id))
    token = secrets.token_urlsafe(32)
    row = ReviewSession(token_sha256=_digest(token), key=key, csrf=secrets.token_urlsafe(32),
                        created_at=now(), expires_at=now() + timedelta(hours=SESSION_HOURS))
    session.add(row)
    session.flush()
    return token, row


def session_of(session: Session, token: str) -> tuple[Caller, ReviewSession] | None:
    """The caller and row of a live review session token, or None (unknown, expired, or
    its key revoked)."""
    row = session.scalar(select(ReviewSession).where(ReviewSession.token_sha256 == _digest(token)))
    if row is None or row.expires_at <= now() or row.key.revoked_at is not None:
        return None
    return _caller_of(row.key), row


def end_session(session: Session, token: str) -> None:
    row = session.scalar(select(ReviewSession).where(ReviewSession.token_sha256 == _digest(token)))
    if row is not None:
        session.delete(row)


# -- sharing -------------------------------------------------------------------------


def scope_of(session: Session, caller: Caller) -> Scope:
    """What ``caller`` may touch: its organisation plus active agreements with it."""
    rows = session.execute(
        select(SharingAgreement, Organisation.code)
        .join(Organisation, SharingAgreement.owner_id == Organisation.id)
        .where(
            SharingAgreement.partner_id == caller.organisation_id,
            SharingAgreement.revoked_at.is_(None),
        )
    ).all()
    own = {caller.organisation}
    match = own | {code for a, code in rows if a.share_match}
    view = own | {code for a, code in rows if a.share_sightings}
    precise: set[str] = set()
    if caller.precise_location:
        precise = own | {code for a, code in rows if a.share_sightings and a.share_precise}
    return Scope(frozenset(match), frozenset(view), frozenset(precise), caller.organisation)


def add_agreement(
    session: Session,
    owner: str,
    partner: str,
    *,
    share_match: bool,
    share_sightings: bool,
    share_precise: bool,
    created_by: str,
    note: str | None = None,
) -> SharingAgreement:
    """``owner`` shares with ``partner`` (replacing an active agreement between them)."""
    orgs = {o.code: o for o in session.scalars(
        select(Organisation).where(Organisation.code.in_([owner, partner])))}  # fmt: skip
    if partner not in orgs:
        raise ReidError(f"no organisation {partner!r} in the registry")
    if owner == partner:
        raise ReidError("an organisation always sees its own data: no agreement needed")
    for old in active_agreements(session, owner=owner, partner=partner):
        old.revoked_at = now()
    row = SharingAgreement(
        owner=orgs[owner], partner=orgs[partner], share_match=share_match,
        share_sightings=share_sightings, share_precise=share_precise, note=note,
        created_by=created_by, created_at=now(),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def active_agreements(
    session: Session, owner: str | None = None, partner: str | None = None
) -> list[SharingAgreement]:
    """Agreements in force, optionally of one owner and/or one partner."""
    from sqlalchemy.orm import aliased

    own, par = aliased(Organisation), aliased(Organisation)
    q = (
        select(SharingAgreement)
        .join(own, SharingAgreement.owner_id == own.id)
        .join(par, SharingAgreement.partner_id == par.id)
        .where(SharingAgreement.revoked_at.is_(None))
        .order_by(SharingAgreement.id)
    )
    if owner is not None:
        q = q.where(own.code == owner)
    if partner is not None:
        q = q.where(par.code == partner)
    return list(session.scalars(q))


# -- audit ---------------------------------------------------------------------------


def audit(
    session: Session,
    caller: Caller | None,
    action: str,
    resource: str,
    *,
    precise: bool = False,
    detail: dict | None = None,
    owner: str | None = None,
) -> AuditEntry:
    """Record an audited act in the caller's transaction (``caller`` None: the CLI);
    ``owner``: the organisation whose data it touched (it sees the entry too)."""
    row = AuditEntry(
        at=now(),
        key_id=None if caller is None else caller.key_id,
        organisation=None if caller is None else caller.organisation,
        action=action,
        resource=resource[:300],
        precise_location=precise,
        owner=owner,
        detail=detail,
    )
    session.add(row)
    return row


def audit_precise(session: Session, caller: Caller, resource: str, owners, **detail) -> None:
    """Audit a read of exact coordinates: one entry per organisation whose exact
    coordinates were read, so that each owner's admins see who read theirs."""
    for owner in sorted(o for o in owners if o is not None):
        audit(session, caller, "read.precise", resource, precise=True, owner=owner,
              detail=detail or None)  # fmt: skip


# -- rate limits ---------------------------------------------------------------------


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, ``per_minute`` sustained."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0.0
            self._buckets[key] = (tokens, t)
            return max(1.0, math.ceil((1.0 - tokens) / self.rate))

    def wait(self, key: str) -> float:
        """0 while ``key`` has a request left, else the seconds until it has (takes none)."""
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            return 0.0 if tokens >= 1.0 else max(1.0, math.ceil((1.0 - tokens) / self.rate))
