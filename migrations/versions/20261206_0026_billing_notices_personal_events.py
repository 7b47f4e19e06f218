"""billing: owners' notices (trial ending, refund, dispute) sent once

Revision ID: 0026
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_notices",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_notices_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_billing_notices")),
    )
    op.create_index(op.f("ix_billing_notices_workspace_id"), "billing_notices", ["workspace_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_billing_notices_workspace_id"), table_name="billing_notices")
    op.drop_table("billing_notices")
