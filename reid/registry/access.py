"""Who may call the matching API, what partners share, and what they did (the audit log).

Declared on the registry's declarative :class:`~reid.registry.models.Base`, so the same
database (SQLite or PostgreSQL) and the same Alembic migrations hold them:

- :class:`ApiKey`: one key of one organisation with one role and, separately, the
  precise-location permission. Only a SHA-256 of the secret is stored (keys are 256-bit
  random tokens, so a fast hash is as good as a slow one; nothing to brute-force); the
  public ``key_id`` prefix finds the row. A revoked key stays, with when it ended.
- :class:`SharingAgreement`: organisation ``owner`` lets organisation ``partner`` match
  against its gallery (``share_match``), see its sightings, individuals and movements
  (``share_sightings``) and, for partner keys that hold the permission, their exact
  coordinates (``share_precise``). Agreements are one-directional and explicit; an ended
  one keeps ``revoked_at``.
- :class:`ReviewSession`: a browser signed in to the review page (the cookie holds a
  session token, hashed here, never the API key) and its CSRF token.
- :class:`AuditEntry`: every decision, every enrolment, every key and agreement change
  and every response that carried exact coordinates: who (key, organisation), when, what,
  on which resource.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reid.registry.models import Base, Organisation

#: Roles in increasing order of power; each may do everything the ones before it may.
ROLES: tuple[str, ...] = ("viewer", "contributor", "reviewer", "admin")


class ApiKey(Base):
    """An API key: organisation, role, precise-location permission; the secret only hashed."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    precise_location: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    organisation: Mapped[Organisation] = relationship()


class SharingAgreement(Base):
    """What organisation ``owner`` shares with organisation ``partner`` (one direction)."""

    __tablename__ = "sharing_agreements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    share_match: Mapped[bool] = mapped_column(Boolean, default=True)
    share_sightings: Mapped[bool] = mapped_column(Boolean, default=False)
    share_precise: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    owner: Mapped[Organisation] = relationship(foreign_keys=[owner_id])
    partner: Mapped[Organisation] = relationship(foreign_keys=[partner_id])


class ReviewSession(Base):
    """A signed-in browser of the review page: the cookie holds a random token of which
    only the SHA-256 is stored (never the API key), with the session's CSRF token; it
    ends at ``expires_at``, at sign-out, or when its key is revoked."""

    __tablename__ = "review_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    key: Mapped[ApiKey] = relationship()


class AuditEntry(Base):
    """One audited act: a decision, a change, or a read of exact coordinates."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    organisation: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(300))
    precise_location: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Whose data the act touched, when another organisation's (a partner reading its
    #: exact coordinates): that organisation's admins see the entry in their log too.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict | None] = mapped_column(JSON)
    __table_args__ = (Index("ix_audit_log_org_at", "organisation", "at"),)
