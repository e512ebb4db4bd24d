"""A served world in seconds: a tiny model made on the fly, a real gallery index owned by
three organisations, a registry (SQLite, or PostgreSQL when REID_TEST_POSTGRES_URL is set)
with sightings in Nepal and India, and a key per organisation and role.

Organisations, seen from NPO's keys: NPO (Nepal) is *own*; INO (India) is the *partner*
(it shares matching and sightings with NPO, not exact coordinates); BTO (Bhutan) is
*foreign* (shares nothing). NPO shares nothing back.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.manifest import read_manifest
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.catalogue import write_catalogue
from tests.conftest import POSTGRES_URL

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
ORGS = {"NPO": "NP", "INO": "IN", "BTO": "BT"}
ROLES = ("viewer", "contributor", "reviewer", "admin")
#: (lat, lon) of a camera inside each country.
PLACES = {"NP": (28.40, 81.30), "IN": (28.25, 81.15), "BT": (27.40, 90.40)}
T0 = datetime(2025, 1, 1, 6, 0)


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve-catalogue")
    write_catalogue(out, species=("tiger",), individuals=6, images_per_side=3, seed=3, workers=1)
    return out


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    return save_release(model, tmp_path_factory.mktemp("serve-release"), name="tiny",
                        training_data="none", metrics={})  # fmt: skip


@pytest.fixture(scope="session")
def records(catalogue):
    return read_manifest(catalogue / "manifest.csv")


def owner_of(individual: str) -> str:
    """Gallery owner by individual: two each for NPO, INO, BTO (sorted ids)."""
    n = int("".join(ch for ch in individual if ch.isdigit())[-1:] or 0)
    return ("NPO", "INO", "BTO")[n % 3]


@pytest.fixture(scope="session")
def gallery_template(records, release, tmp_path_factory) -> Path:
    """The enrolled gallery (all but the last photo of each flank), built once."""
    from reid.match import enroll

    out = tmp_path_factory.mktemp("serve-gallery") / "index"
    flanks: dict = {}
    for r in records:
        flanks.setdefault((r.individual_id, r.side), []).append(r)
    for org in ORGS:
        chosen = [r for k, rs in flanks.items() if owner_of(k[0]) == org for r in rs[:-1]]
        enroll(chosen, out, release, organisation=org, workers=1, calibration_sample=40,
               new_prior=0.5, show_progress=False)  # fmt: skip
    return out


@pytest.fixture
def held_out(records):
    """The last photo of each flank (never enrolled): (record, owner) pairs."""
    flanks: dict = {}
    for r in records:
        flanks.setdefault((r.individual_id, r.side), []).append(r)
    return {k: (rs[-1], owner_of(k[0])) for k, rs in flanks.items()}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
        return
    if not POSTGRES_URL:
        if os.environ.get("REID_TEST_REQUIRE_POSTGRES"):
            pytest.fail("REID_TEST_REQUIRE_POSTGRES is set but REID_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL: set REID_TEST_POSTGRES_URL (.ci/run starts one)")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@dataclass
class World:
    """The served app's client, keys by (org, role[, 'precise']), and recorded data."""

    client: object
    app: object
    keys: dict = field(default_factory=dict)
    sightings: dict = field(default_factory=dict)  # org -> sighting code
    individuals: dict = field(default_factory=dict)  # org -> individual code
    tmp: Path | None = None

    def auth(self, org: str = "NPO", role: str = "admin", precise: bool = False) -> dict:
        return {"Authorization": f"Bearer {self.keys[(org, role, precise)]}"}


def seed_registry(url: str, photos: Path) -> tuple[dict, dict, dict]:
    """Organisations, keys, agreements, and per organisation a site, an individual and a
    confirmed sighting; NPO's tiger T-NPO also crossed into India (a movement)."""
    from reid.movements import derive_movements
    from reid.registry import (
        Registry,
        add_individual,
        add_media,
        add_sighting,
        ensure_deployment,
        ensure_organisation,
        ensure_site,
        get_individual,
    )
    from serve.access import add_agreement, create_key

    reg = Registry(url)
    keys, sightings, individuals = {}, {}, {}
    with reg.session() as s:
        orgs = {c: ensure_organisation(s, c, country=cc) for c, cc in ORGS.items()}
        for org in ORGS:
            for role in ROLES:
                for precise in (False, True):
                    keys[(org, role, precise)] = create_key(s, org, role, precise)[1]
        add_agreement(s, "INO", "NPO", share_match=True, share_sightings=True,
                      share_precise=False, created_by="test")  # fmt: skip
        deps = {}
        for org, cc in ORGS.items():
            lat, lon = PLACES[cc]
            site = ensure_site(s, f"site-{org}", cc, lat, lon, organisation=orgs[org])
            deps[org] = ensure_deployment(s, f"dep-{org}", site, lat + 0.0123, lon + 0.0456)
        for day, org in enumerate(ORGS):
            ind = add_individual(s, f"T-{org}", "tiger", organisation=orgs[org])
            individuals[org] = ind.code
            path = photos / f"{org}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(np.full((40, 80, 3), 40 * day, np.uint8)))
            media = add_media(s, deps[org], path, T0 + timedelta(days=day))
            sightings[org] = add_sighting(s, media, "tiger", side="left", individual=ind,
                                          status="confirmed", decided_by="seed").code  # fmt: skip
        media = add_media(s, deps["INO"], "/nonexistent/crossing.jpg", T0 + timedelta(days=9))
        add_sighting(s, media, "tiger", side="left", individual=get_individual(s, "T-NPO"),
                     status="confirmed", decided_by="seed")  # fmt: skip
        derive_movements(s)
    reg.close()
    return keys, sightings, individuals


@pytest.fixture
def world(db_url, gallery_template, release, tmp_path):
    """A running app (TestClient with its lifespan) on a fresh copy of the gallery."""
    import shutil

    from fastapi.testclient import TestClient

    from serve import create_app
    from serve.settings import Settings

    index = tmp_path / "index"
    shutil.copytree(gallery_template, index)
    keys, sightings, individuals = seed_registry(db_url, tmp_path / "seed")
    settings = Settings(index=index, model=release, database_url=db_url,
                        media_dir=tmp_path / "media", jobs_dir=tmp_path / "jobs",
                        rate_limit_per_minute=6000, rate_limit_burst=1000, _env_file=None)
    app = create_app(settings)
    with TestClient(app) as client:
        yield World(client, app, keys, sightings, individuals, tmp_path)


def jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_bytes(record) -> bytes:
    return Path(record.path).read_bytes()


def match_form(**extra) -> dict:
    """Form fields of a valid match in Nepal; ``extra`` overrides (None drops a field)."""
    lat, lon = PLACES["NP"]
    form = {"species": "tiger", "captured_at": "2025-02-01T05:00:00Z", "country": "NP",
            "lat": str(lat), "lon": str(lon), "side": "left"}  # fmt: skip
    form.update({k: str(v) for k, v in extra.items() if v is not None})
    return {k: v for k, v in form.items() if not (k in extra and extra[k] is None)}


@pytest.fixture
def served(world):
    """The same settings served over loopback by uvicorn in a thread."""
    import uvicorn

    from serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(world.app.state.reid.settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
