"""privacy: forgotten guests, data exports, retention of events (per workspace)

Revision ID: 0019
Revises: 0020
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("guests") as batch:
        batch.add_column(sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("retention_notice_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("anonymized_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("retention_months", sa.Integer(), nullable=True))
    op.create_table(
        "data_exports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("downloaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("file_deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_data_exports_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_data_exports_token_hash")),
    )
    op.create_index(op.f("ix_data_exports_user_id"), "data_exports", ["user_id"])
    op.create_index(op.f("ix_data_exports_status"), "data_exports", ["status"])
    op.create_index(op.f("ix_data_exports_next_attempt_at"), "data_exports", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("data_exports")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("retention_months")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("anonymized_at")
        batch.drop_column("retention_notice_at")
    with op.batch_alter_table("guests") as batch:
        batch.drop_column("forgotten_at")
