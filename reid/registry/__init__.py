"""Sightings registry: who was seen where and when, and every decision behind it.

SQLAlchemy 2 models with Alembic migrations shipped in the package; SQLite in the data
home by default, PostgreSQL by URL (``$REID_DATABASE_URL``). The whole service API:

Open::

    reg = Registry()                      # or Registry("postgresql+psycopg://...")
    with reg.session() as s:              # one transaction: commit on success
        ...

Record (the matcher and season runs)::

    org  = ensure_organisation(s, "NTNC", country="NP")
    site = ensure_site(s, "chitwan-w", country="NP", lat=27.5, lon=84.3,
                       protected_area="Chitwan NP", organisation=org)
    dep  = ensure_deployment(s, "cam-12-2025", site, camera_id="cam-12")
    m    = add_media(s, dep, "DCIM/0001.jpg", captured_at)       # SHA-256 from the file
    sig  = add_sighting(s, m, "tiger", side="left", box=(x, y, w, h), individual=ind,
                        status="proposed", decided_by="matcher", model_version="...",
                        candidates=[{"individual": "T-017", "score": 0.93}])

Decide and curate (reviewers)::

    confirm(s, sig, decided_by="ana", reason="stripes match")   # or individual=other
    reject(s, sig, decided_by="ana", reason="blurred")
    merge(s, keep, other, decided_by="ana", reason="same animal")  # split(s, other, ...)
    decisions_of(s, sig); history_of(s, individual)

Read (coordinates generalised unless the :class:`~reid.privacy.Viewer` may see them)::

    list_sightings(s, viewer, individual="T-017", country="NP", since=...)
    list_individuals(s); get_individual(s, "T-017")

Movements derive from confirmed sightings: :mod:`reid.movements`.
"""

from reid.registry.db import Registry, database_url, migrate
from reid.registry.models import (
    Decision,
    Deployment,
    Individual,
    Media,
    Merge,
    Movement,
    Organisation,
    Sighting,
    Site,
)
from reid.registry.services import (
    SightingView,
    add_individual,
    add_media,
    add_sighting,
    confirm,
    decisions_of,
    ensure_deployment,
    ensure_organisation,
    ensure_site,
    get_individual,
    get_sighting,
    history_of,
    list_individuals,
    list_sightings,
    merge,
    reject,
    sighting_views,
    site_at_place,
    split,
)

__all__ = [
    "Decision",
    "Deployment",
    "Individual",
    "Media",
    "Merge",
    "Movement",
    "Organisation",
    "Registry",
    "Sighting",
    "SightingView",
    "Site",
    "add_individual",
    "add_media",
    "add_sighting",
    "confirm",
    "database_url",
    "decisions_of",
    "ensure_deployment",
    "ensure_organisation",
    "ensure_site",
    "get_individual",
    "get_sighting",
    "history_of",
    "list_individuals",
    "list_sightings",
    "sighting_views",
    "merge",
    "migrate",
    "reject",
    "site_at_place",
    "split",
]
