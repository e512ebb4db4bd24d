"""Data migrations: what an older registry holds is brought up to the current rules."""

import os
import uuid

import pytest
import sqlalchemy as sa

from reid.registry import Registry
from reid.registry.db import make_engine, migrate
from tests.conftest import POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """The URL of an empty database (nothing migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    if not POSTGRES_URL:
        if os.environ.get("REID_TEST_REQUIRE_POSTGRES"):
            pytest.fail("REID_TEST_REQUIRE_POSTGRES is set but REID_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL: set REID_TEST_POSTGRES_URL (.ci/run starts one)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_site_codes_derived_from_coordinates_are_renamed(empty_url):
    engine = make_engine(empty_url)
    migrate(engine, "0002_access")
    old = "NPO:NP:28.4312,81.2871"
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO organisations (id, code, name, country) "
                          "VALUES (1, 'NPO', 'NPO', 'NP')"))
        c.execute(sa.text("INSERT INTO sites (id, code, country, lat, lon, organisation_id) "
                          "VALUES (1, :c, 'NP', 28.4312, 81.2871, 1), "
                          "(2, 'bardia-1', 'NP', 28.4, 81.3, 1)"), {"c": old})
        c.execute(sa.text("INSERT INTO deployments (id, code, site_id, lat, lon) VALUES "
                          "(1, :a, 1, 28.4312, 81.2871), (2, :b, 1, 28.4312, 81.2871), "
                          "(3, 'api:bardia-1', 2, 28.4, 81.3)"),
                  {"a": f"api:{old}", "b": f"api:{old}:cam-7"})  # fmt: skip
    engine.dispose()
    reg = Registry(empty_url)  # migrates to the newest revision
    with reg.engine.connect() as c:
        sites = dict(c.execute(sa.text("SELECT id, code FROM sites")).all())
        deps = dict(c.execute(sa.text("SELECT id, code FROM deployments")).all())
    reg.close()
    assert sites[2] == "bardia-1" and deps[3] == "api:bardia-1"
    assert sites[1].startswith("NPO:NP:site-")
    assert deps[1] == f"api:{sites[1]}" and deps[2] == f"api:{sites[1]}:cam-7"
    text = " ".join([*sites.values(), *deps.values()])
    assert "28.43" not in text and "81.28" not in text
