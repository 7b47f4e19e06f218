"""the event day, continued: each event's "please answer" nudge before its RSVP
deadline, and the further secrets of a pass that reminders carry as QR codes

Revision ID: 0024
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("answer_nudge", sa.String(length=8), nullable=True))
    op.create_table(
        "pass_secrets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("pass_id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_pass_secrets_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["pass_id"], ["guest_passes.id"], ondelete="CASCADE",
                                name=op.f("fk_pass_secrets_pass_id_guest_passes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pass_secrets")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_pass_secrets_secret_hash")),
    )
    op.create_index(op.f("ix_pass_secrets_workspace_id"), "pass_secrets", ["workspace_id"])
    op.create_index(op.f("ix_pass_secrets_pass_id"), "pass_secrets", ["pass_id"])


def downgrade() -> None:
    op.drop_table("pass_secrets")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("answer_nudge")
