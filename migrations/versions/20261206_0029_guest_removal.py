"""guests: removing a guest hides them (``removed_at``) until the undo
window has passed and the worker purges them; the one-guest-per-address
rule holds among listed guests only

Revision ID: 0029
Revises: 0027
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0027"
branch_labels = None
depends_on = None

LISTED = sa.text("removed_at IS NULL")
REMOVED = sa.text("removed_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("guests") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("uq_guests_event_id", type_="unique")
    op.create_index("uq_guests_event_id_email", "guests", ["event_id", "email"], unique=True,
                    postgresql_where=LISTED, sqlite_where=LISTED)
    op.create_index("ix_guests_removed_at", "guests", ["removed_at"],
                    postgresql_where=REMOVED, sqlite_where=REMOVED)


def downgrade() -> None:
    # Removed guests cannot stay once the address is unique again among all rows.
    op.execute("DELETE FROM guests WHERE removed_at IS NOT NULL")
    op.drop_index("ix_guests_removed_at", table_name="guests")
    op.drop_index("uq_guests_event_id_email", table_name="guests")
    with op.batch_alter_table("guests") as batch:
        batch.create_unique_constraint("uq_guests_event_id", ["event_id", "email"])
        batch.drop_column("removed_at")
