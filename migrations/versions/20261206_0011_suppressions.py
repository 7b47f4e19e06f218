"""suppressions: addresses not to write to again; notifications.kind

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("channel", "address", "scope", name=op.f("uq_suppressions_channel")),
    )
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="account"))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("kind")
    op.drop_table("suppressions")
