"""notifications: SMS segments and price as the provider reports them

Revision ID: 0013
Revises: 0015
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("segments", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("price", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("price_unit", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("price_unit")
        batch.drop_column("price")
        batch.drop_column("segments")
