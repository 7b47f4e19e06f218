"""the event day: guests' passes, admissions at the door and the doors' scans;
reminders: each event's offsets and the scheduled messages; the event's
calendar sequence and the change its guests were last told of

Revision ID: 0020
Revises: 0021
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0021"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _tenant(table: str) -> list:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f(f"fk_{table}_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE",
                                name=op.f(f"fk_{table}_event_id_events")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "guest_passes", *_tenant("guest_passes"),
        sa.Column("guest_id", sa.Uuid(), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], ondelete="CASCADE",
                                name=op.f("fk_guest_passes_guest_id_guests")),
        sa.ForeignKeyConstraint(["link_id"], ["invitation_links.id"], ondelete="CASCADE",
                                name=op.f("fk_guest_passes_link_id_invitation_links")),
        sa.UniqueConstraint("link_id", name=op.f("uq_guest_passes_link_id")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_guest_passes_secret_hash")),
        sa.UniqueConstraint("event_id", "code", name=op.f("uq_guest_passes_event_id")),
    )
    op.create_index(op.f("ix_guest_passes_workspace_id"), "guest_passes", ["workspace_id"])
    op.create_index(op.f("ix_guest_passes_guest_id"), "guest_passes", ["guest_id"])

    op.create_table(
        "admissions", *_tenant("admissions"),
        sa.Column("guest_id", sa.Uuid(), nullable=False),
        sa.Column("seat", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.String(length=64), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admitted_by_id", sa.Uuid(), nullable=True),
        sa.Column("admitted_by", sa.String(length=100), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], ondelete="CASCADE",
                                name=op.f("fk_admissions_guest_id_guests")),
        sa.ForeignKeyConstraint(["admitted_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_admissions_admitted_by_id_users")),
        sa.ForeignKeyConstraint(["undone_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_admissions_undone_by_id_users")),
    )
    op.create_index(op.f("ix_admissions_workspace_id"), "admissions", ["workspace_id"])
    op.create_index(op.f("ix_admissions_event_id"), "admissions", ["event_id"])
    op.create_index("ix_admissions_event_scan", "admissions", ["event_id", "scan_id"])
    op.create_index("uq_admissions_live_seat", "admissions", ["guest_id", "seat"], unique=True,
                    sqlite_where=sa.text("undone_at IS NULL"), postgresql_where=sa.text("undone_at IS NULL"))

    op.create_table(
        "door_scans", *_tenant("door_scans"),
        sa.Column("scan_id", sa.String(length=64), nullable=False),
        sa.Column("guest_id", sa.Uuid(), nullable=True),
        sa.Column("scanned_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("answer", JSON, nullable=False),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], ondelete="SET NULL",
                                name=op.f("fk_door_scans_guest_id_guests")),
        sa.ForeignKeyConstraint(["scanned_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_door_scans_scanned_by_id_users")),
        sa.UniqueConstraint("event_id", "scan_id", name=op.f("uq_door_scans_event_id")),
    )
    op.create_index(op.f("ix_door_scans_workspace_id"), "door_scans", ["workspace_id"])

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("reminders", JSON, nullable=False, server_default='["7d", "1d"]'))
        batch.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("notified_sequence", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "scheduled_messages", *_tenant("scheduled_messages"),
        sa.Column("guest_id", sa.Uuid(), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], ondelete="CASCADE",
                                name=op.f("fk_scheduled_messages_guest_id_guests")),
        sa.UniqueConstraint("guest_id", "rule", name=op.f("uq_scheduled_messages_guest_id")),
    )
    op.create_index(op.f("ix_scheduled_messages_workspace_id"), "scheduled_messages", ["workspace_id"])
    op.create_index(op.f("ix_scheduled_messages_event_id"), "scheduled_messages", ["event_id"])
    op.create_index("ix_scheduled_messages_due", "scheduled_messages", ["state", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_messages_due", table_name="scheduled_messages")
    op.drop_index(op.f("ix_scheduled_messages_event_id"), table_name="scheduled_messages")
    op.drop_index(op.f("ix_scheduled_messages_workspace_id"), table_name="scheduled_messages")
    op.drop_table("scheduled_messages")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("notified_sequence")
        batch.drop_column("sequence")
        batch.drop_column("reminders")
    op.drop_index(op.f("ix_door_scans_workspace_id"), table_name="door_scans")
    op.drop_table("door_scans")
    op.drop_index("uq_admissions_live_seat", table_name="admissions")
    op.drop_index("ix_admissions_event_scan", table_name="admissions")
    op.drop_index(op.f("ix_admissions_event_id"), table_name="admissions")
    op.drop_index(op.f("ix_admissions_workspace_id"), table_name="admissions")
    op.drop_table("admissions")
    op.drop_index(op.f("ix_guest_passes_guest_id"), table_name="guest_passes")
    op.drop_index(op.f("ix_guest_passes_workspace_id"), table_name="guest_passes")
    op.drop_table("guest_passes")
