"""notification message ids: notifications.message_id

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows queued before this get theirs at their next attempt.
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("message_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("message_id")
