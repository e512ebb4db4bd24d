"""sites made by the matching API without a code no longer carry their coordinates

Before, ``POST /v1/match`` without ``site`` named the new site
``{organisation}:{CC}:{lat:.4f},{lon:.4f}`` and its deployments ``api:{site}[:{camera}]``:
every reader of the site code (sightings, movements, the review queue) saw the exact
position. This data migration renames every such site to ``{organisation}:{CC}:site-<random>``
and its API deployments alike (ids and rows are unchanged; only the codes change).

Revision ID: 0003_site_codes
Revises: 0002_access
Create Date: 2026-12-06 06:20:00.000000
"""

import re
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003_site_codes"
down_revision = "0002_access"
branch_labels = None
depends_on = None

#: The code the API derived from coordinates.
DERIVED = re.compile(r"^(?P<head>.+:[A-Z]{2}):-?\d+\.\d{4},-?\d+\.\d{4}$")


def upgrade() -> None:
    conn = op.get_bind()
    sites = sa.table("sites", sa.column("id", sa.Integer), sa.column("code", sa.String))
    deps = sa.table("deployments", sa.column("id", sa.Integer), sa.column("code", sa.String),
                    sa.column("site_id", sa.Integer))  # fmt: skip
    for site_id, code in conn.execute(sa.select(sites.c.id, sites.c.code)).all():
        m = DERIVED.match(code)
        if m is None:
            continue
        new = f"{m['head']}:site-{uuid.uuid4().hex[:10]}"
        conn.execute(sa.update(sites).where(sites.c.id == site_id).values(code=new))
        old_dep = f"api:{code}"
        rows = conn.execute(
            sa.select(deps.c.id, deps.c.code).where(deps.c.site_id == site_id)
        ).all()
        for dep_id, dep_code in rows:
            if dep_code == old_dep or dep_code.startswith(old_dep + ":"):
                conn.execute(sa.update(deps).where(deps.c.id == dep_id)
                             .values(code=f"api:{new}{dep_code[len(old_dep):]}"))  # fmt: skip


def downgrade() -> None:
    """The coordinates are not put back into the codes (that was the leak)."""
