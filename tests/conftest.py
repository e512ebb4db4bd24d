"""Fixtures shared across the test tree."""

from __future__ import annotations

import os
import uuid

import pytest

#: PostgreSQL for the registry tests; ``.ci/run`` starts a server and sets it.
POSTGRES_URL = os.environ.get("REID_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    """A fresh, migrated registry: a SQLite file, or a new schema on the test PostgreSQL."""
    from reid.registry import Registry

    if request.param == "sqlite":
        reg = Registry(f"sqlite:///{tmp_path / 'registry.sqlite'}")
        yield reg
        reg.close()
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
    reg = Registry(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    yield reg
    reg.close()
    with admin.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()
