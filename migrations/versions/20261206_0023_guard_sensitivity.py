"""guard sensitivity: each workspace's choice of relaxed, normal or strict

Revision ID: 0023
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("guard_sensitivity", sa.String(length=16), nullable=False,
                                   server_default="normal"))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("guard_sensitivity")
