"""individual codes are unique per organisation, not across all organisations

A code was one namespace for everybody: an organisation could take a code that
another's gallery uses before it reached the registry (then the owner could not confirm
its own animal), and a conflict told it that a foreign code existed. Now
``(organisation_id, code)`` is unique and ``code`` is only indexed.

Revision ID: 0004_individual_codes
Revises: 0003_site_codes
Create Date: 2026-12-06 06:30:00.000000
"""

from alembic import op

revision = "0004_individual_codes"
down_revision = "0003_site_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_constraint("uq_individuals_code", type_="unique")
        batch_op.create_unique_constraint("uq_individuals_org_code", ["organisation_id", "code"])
        batch_op.create_index("ix_individuals_code", ["code"], unique=False)


def downgrade() -> None:
    """Back to one namespace (fails when two organisations share a code)."""
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_index("ix_individuals_code")
        batch_op.drop_constraint("uq_individuals_org_code", type_="unique")
        batch_op.create_unique_constraint("uq_individuals_code", ["code"])
