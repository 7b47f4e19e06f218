"""events.reply_to and events.invitation_channel; guests.preferred_channel

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("invitation_channel", sa.String(length=16), nullable=True))
    with op.batch_alter_table("guests") as batch:
        batch.add_column(sa.Column("preferred_channel", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guests") as batch:
        batch.drop_column("preferred_channel")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("invitation_channel")
        batch.drop_column("reply_to")
