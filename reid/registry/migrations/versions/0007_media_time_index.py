"""media: an index on capture time, for sightings listed and paged in time order

Revision ID: 0007_media_time_index
Revises: 0006_audit_owner
Create Date: 2026-12-08 02:10:00.000000
"""

from alembic import op

revision = "0007_media_time_index"
down_revision = "0006_audit_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_media_captured_at"), ["captured_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_captured_at"))
