"""audit log: whose data an act touched, so an owner's admins see partners' reads

Revision ID: 0006_audit_owner
Revises: 0005_review_sessions
Create Date: 2026-12-06 06:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_audit_owner"
down_revision = "0005_review_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_log_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_owner"))
        batch_op.drop_column("owner")
