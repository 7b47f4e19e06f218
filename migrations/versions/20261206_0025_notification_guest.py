"""notifications name the guest they are about, and providers' reports the
message they were about, in indexed columns: forgetting a guest finds their
messages and the reports naming their address without reading every row

Revision ID: 0025
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("guest_id", sa.Uuid(), nullable=True))
    # The messages already sent about a guest: their ``about`` named them.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE notifications SET guest_id = (about ->> 'guest_id')::uuid "
                   "WHERE about ? 'guest_id' AND about ->> 'guest_id' ~* "
                   "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'")
    else:
        # SQLite keeps a UUID as its 32 hex digits.
        op.execute("UPDATE notifications SET guest_id = lower(replace(json_extract(about, '$.guest_id'), '-', '')) "
                   "WHERE length(replace(json_extract(about, '$.guest_id'), '-', '')) = 32")
    op.create_index(op.f("ix_notifications_guest_id"), "notifications", ["guest_id"])
    # Reports processed before this revision name no message: they go after
    # webhooks.retention_days, as before.
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("notification_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_webhook_inbox_notification_id"), "webhook_inbox", ["notification_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_inbox_notification_id"), table_name="webhook_inbox")
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_column("notification_id")
    op.drop_index(op.f("ix_notifications_guest_id"), table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("guest_id")
