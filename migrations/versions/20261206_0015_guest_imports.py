"""guest_imports: every guest-list import; guests.import_id

Revision ID: 0015
Revises: 0017
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "guest_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_size", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=True),
        sa.Column("delimiter", sa.String(length=4), nullable=True),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("duplicates", sa.String(length=8), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("updates", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_guest_imports_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE",
                                name=op.f("fk_guest_imports_event_id_events")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_guest_imports_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_imports")),
    )
    op.create_index(op.f("ix_guest_imports_workspace_id"), "guest_imports", ["workspace_id"])
    op.create_index("ix_guest_imports_event_created", "guest_imports", ["event_id", "created_at"])
    with op.batch_alter_table("guests") as batch:
        batch.add_column(sa.Column("import_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(op.f("fk_guests_import_id_guest_imports"), "guest_imports", ["import_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index(op.f("ix_guests_import_id"), ["import_id"])


def downgrade() -> None:
    with op.batch_alter_table("guests") as batch:
        batch.drop_index(op.f("ix_guests_import_id"))
        batch.drop_constraint(op.f("fk_guests_import_id_guest_imports"), type_="foreignkey")
        batch.drop_column("import_id")
    op.drop_index("ix_guest_imports_event_created", table_name="guest_imports")
    op.drop_index(op.f("ix_guest_imports_workspace_id"), table_name="guest_imports")
    op.drop_table("guest_imports")
