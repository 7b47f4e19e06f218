"""webhook inbox; notifications' delivery state

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("processed_at", TIMESTAMP, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_inbox")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_webhook_inbox_provider")),
    )
    op.create_index(op.f("ix_webhook_inbox_next_attempt_at"), "webhook_inbox", ["next_attempt_at"])
    op.create_index(op.f("ix_webhook_inbox_status"), "webhook_inbox", ["status"])
    # Messages already sent count as sent; those still on their way as queued.
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("delivery_state", sa.String(length=16), nullable=False,
                                   server_default="queued"))
        batch.add_column(sa.Column("delivery_detail", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("delivered_at", TIMESTAMP, nullable=True))
        batch.create_index("ix_notifications_provider_message", ["provider", "provider_message_id"])
    op.execute("UPDATE notifications SET delivery_state = CASE status WHEN 'succeeded' THEN 'sent' "
               "WHEN 'failed' THEN 'failed' WHEN 'suppressed' THEN 'suppressed' ELSE 'queued' END")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_provider_message")
        batch.drop_column("delivered_at")
        batch.drop_column("delivery_detail")
        batch.drop_column("delivery_state")
    op.drop_index(op.f("ix_webhook_inbox_status"), table_name="webhook_inbox")
    op.drop_index(op.f("ix_webhook_inbox_next_attempt_at"), table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
