"""The registry's tables (SQLAlchemy 2 declarative models).

Who owns what (organisations), where cameras stood (sites, deployments), what they took
(media), what was seen on it (sightings of individuals), and the trail of every decision.
Times are stored as naive UTC ``DateTime`` values (both SQLite and PostgreSQL keep them
exactly); :func:`reid.registry.db.utc` converts aware datetimes on the way in.
Bounding boxes are fractions of the image size (0-1, top-left origin), as in Camtrap DP.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SPECIES = ("tiger", "leopard")
SIDES = ("left", "right", "unknown")
STATUSES = ("proposed", "confirmed", "rejected")
SEXES = ("female", "male")

#: Constraint names follow one convention so that Alembic migrations can name them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the shared naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class Organisation(Base):
    """An agency or protected-area authority that owns catalogues and cameras."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))


class Site(Base):
    """A place with cameras: a country, a protected area and reference coordinates."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(128), unique=True)
    country: Mapped[str] = mapped_column(String(2), index=True)
    protected_area: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    organisation: Mapped[Organisation | None] = relationship()


class Deployment(Base):
    """One camera at one site for a period (Camtrap DP's deployment)."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(128), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    camera_id: Mapped[str | None] = mapped_column(String(128))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    start: Mapped[datetime | None] = mapped_column(DateTime)
    end: Mapped[datetime | None] = mapped_column(DateTime)
    site: Mapped[Site] = relationship()


class Media(Base):
    """A photo: its file, content hash and UTC capture time."""

    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(128), unique=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    file_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    captured_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # time order, pages
    mediatype: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    deployment: Mapped[Deployment] = relationship()


class Individual(Base):
    """A known animal. A merged individual stays, pointing at the one it became."""

    __tablename__ = "individuals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Unique within its organisation: codes are one namespace per organisation, so that
    #: no organisation can take (or, by a conflict, find out) another's codes.
    code: Mapped[str] = mapped_column(String(128), index=True)
    species: Mapped[str] = mapped_column(String(16))
    sex: Mapped[str | None] = mapped_column(String(8))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    first_seen: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("individuals.id"))
    #: Set whenever one of its sightings changes; cleared by movement derivation.
    stale: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    organisation: Mapped[Organisation | None] = relationship()
    __table_args__ = (
        CheckConstraint("species IN ('tiger', 'leopard')", name="species"),
        CheckConstraint("sex IS NULL OR sex IN ('female', 'male')", name="sex"),
        UniqueConstraint("organisation_id", "code", name="uq_individuals_org_code"),
    )


class Sighting(Base):
    """One animal on one photo: box, flank side, species and (maybe) who it is."""

    __tablename__ = "sightings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(128), unique=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), index=True)
    individual_id: Mapped[int | None] = mapped_column(ForeignKey("individuals.id"))
    species: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(8), default="unknown")
    status: Mapped[str] = mapped_column(String(10), default="proposed")
    bbox_x: Mapped[float | None] = mapped_column(Float)
    bbox_y: Mapped[float | None] = mapped_column(Float)
    bbox_w: Mapped[float | None] = mapped_column(Float)
    bbox_h: Mapped[float | None] = mapped_column(Float)
    media: Mapped[Media] = relationship()
    individual: Mapped[Individual | None] = relationship()
    __table_args__ = (
        CheckConstraint("status IN ('proposed', 'confirmed', 'rejected')", name="status"),
        CheckConstraint("side IN ('left', 'right', 'unknown')", name="side"),
        Index("ix_sightings_individual_status", "individual_id", "status"),
    )


class Decision(Base):
    """Who decided what about a sighting, when, why, and what they were shown."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sighting_id: Mapped[int | None] = mapped_column(ForeignKey("sightings.id"), index=True)
    individual_id: Mapped[int | None] = mapped_column(ForeignKey("individuals.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    candidates: Mapped[list | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(200))
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class Merge(Base):
    """Two individuals found to be one; ``undone_at`` is set when a split reverses it."""

    __tablename__ = "merges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kept_id: Mapped[int] = mapped_column(ForeignKey("individuals.id"))
    merged_id: Mapped[int] = mapped_column(ForeignKey("individuals.id"))
    done_by: Mapped[str] = mapped_column(String(128))
    done_at: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    undone_by: Mapped[str | None] = mapped_column(String(128))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)


class MergedSighting(Base):
    """A sighting that a merge moved, so that a split can move exactly those back."""

    __tablename__ = "merged_sightings"
    merge_id: Mapped[int] = mapped_column(ForeignKey("merges.id"), primary_key=True)
    sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id"), primary_key=True)


class Movement(Base):
    """Consecutive confirmed sightings of one individual in two different countries."""

    __tablename__ = "movements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    individual_id: Mapped[int] = mapped_column(ForeignKey("individuals.id"), index=True)
    from_sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id"))
    to_sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id"))
    from_country: Mapped[str] = mapped_column(String(2))
    to_country: Mapped[str] = mapped_column(String(2))
    from_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    to_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    from_time: Mapped[datetime] = mapped_column(DateTime)
    to_time: Mapped[datetime] = mapped_column(DateTime, index=True)
    distance_km: Mapped[float] = mapped_column(Float)
    days: Mapped[float] = mapped_column(Float)
    __table_args__ = (
        UniqueConstraint("from_sighting_id", "to_sighting_id", name="uq_movements_pair"),
        Index("ix_movements_countries", "from_country", "to_country", "to_time"),
    )
