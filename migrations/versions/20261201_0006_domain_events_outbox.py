"""domain events outbox: domain_events and domain_event_deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "domain_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("aggregate", sa.String(length=100), nullable=True),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
    )
    op.create_index("ix_domain_events_aggregate", "domain_events", ["aggregate", "occurred_at"])
    op.create_index(op.f("ix_domain_events_next_attempt_at"), "domain_events", ["next_attempt_at"])
    op.create_index(op.f("ix_domain_events_status"), "domain_events", ["status"])
    op.create_index(op.f("ix_domain_events_workspace_id"), "domain_events", ["workspace_id"])
    op.create_table(
        "domain_event_deliveries",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("listener", sa.String(length=200), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["domain_events.id"],
                                name=op.f("fk_domain_event_deliveries_event_id_domain_events"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", "listener", name=op.f("pk_domain_event_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("domain_event_deliveries")
    op.drop_index(op.f("ix_domain_events_workspace_id"), table_name="domain_events")
    op.drop_index(op.f("ix_domain_events_status"), table_name="domain_events")
    op.drop_index(op.f("ix_domain_events_next_attempt_at"), table_name="domain_events")
    op.drop_index("ix_domain_events_aggregate", table_name="domain_events")
    op.drop_table("domain_events")
