"""answer alerts: a host's email on each answer, or a daily digest

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "answer_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("digest_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_answer_alerts_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE",
                                name=op.f("fk_answer_alerts_event_id_events")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_answer_alerts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer_alerts")),
        sa.UniqueConstraint("event_id", "user_id", name=op.f("uq_answer_alerts_event_id")),
    )
    op.create_index(op.f("ix_answer_alerts_workspace_id"), "answer_alerts", ["workspace_id"])
    op.create_index(op.f("ix_answer_alerts_user_id"), "answer_alerts", ["user_id"])


def downgrade() -> None:
    op.drop_table("answer_alerts")
