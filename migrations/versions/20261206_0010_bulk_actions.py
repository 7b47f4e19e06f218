"""bulk actions: one row per run of a bulk action on an event

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_bulk_actions_actor_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_bulk_actions_event_id_events"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_bulk_actions_workspace_id_workspaces"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_actions")),
    )
    with op.batch_alter_table("bulk_actions") as batch:
        batch.create_index(batch.f("ix_bulk_actions_workspace_id"), ["workspace_id"], unique=False)
        batch.create_index(batch.f("ix_bulk_actions_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bulk_actions") as batch:
        batch.drop_index(batch.f("ix_bulk_actions_event_id"))
        batch.drop_index(batch.f("ix_bulk_actions_workspace_id"))
    op.drop_table("bulk_actions")
