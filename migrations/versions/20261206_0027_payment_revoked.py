"""billing: a one-time payment refunded in full, or disputed (open or lost),
is revoked: its event is no longer on the plan it bought

Revision ID: 0027
Revises: 0023
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_payments") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_reason", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_payments") as batch:
        batch.drop_column("revoked_reason")
        batch.drop_column("revoked_at")
