"""the invitation: host name, theme colour and cover image of an event;
plus-ones' names and custom questions; capacity and the waitlist

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_covers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_event_covers_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE",
                                name=op.f("fk_event_covers_event_id_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_covers")),
    )
    op.create_index(op.f("ix_event_covers_workspace_id"), "event_covers", ["workspace_id"])
    op.create_index(op.f("ix_event_covers_event_id"), "event_covers", ["event_id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("host_name", sa.String(length=100), nullable=False, server_default=""))
        batch.add_column(sa.Column("theme_colour", sa.String(length=7), nullable=False, server_default=""))
        batch.add_column(sa.Column("cover_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("ask_plus_one_names", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("questions", JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
    for table in ("guests", "rsvps"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("plus_one_names", JSON, nullable=False, server_default="[]"))
            batch.add_column(sa.Column("answers", JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("guests") as batch:
        batch.add_column(sa.Column("waitlisted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_guests_event_waitlist", "guests", ["event_id", "waitlisted_at"])
    # Events made before hosts could name themselves name their creator.
    op.execute("UPDATE events SET host_name = COALESCE((SELECT display_name FROM users "
               "WHERE users.id = events.created_by_id), '')")


def downgrade() -> None:
    op.drop_index("ix_guests_event_waitlist", table_name="guests")
    with op.batch_alter_table("guests") as batch:
        batch.drop_column("waitlisted_at")
    for table in ("rsvps", "guests"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("answers")
            batch.drop_column("plus_one_names")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("capacity")
        batch.drop_column("questions")
        batch.drop_column("ask_plus_one_names")
        batch.drop_column("cover_id")
        batch.drop_column("theme_colour")
        batch.drop_column("host_name")
    op.drop_index(op.f("ix_event_covers_event_id"), table_name="event_covers")
    op.drop_index(op.f("ix_event_covers_workspace_id"), table_name="event_covers")
    op.drop_table("event_covers")
