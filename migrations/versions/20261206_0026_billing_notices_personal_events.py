"""billing: owners' notices (trial ending, refund, dispute) sent once;
Personal bought per event (a payment names its event and counts its texts)
instead of as workspace credits

Revision ID: 0026
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
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
    with op.batch_alter_table("billing_payments") as batch:
        batch.add_column(sa.Column("event_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("texts_used", sa.Integer(), server_default="0", nullable=False))
        batch.create_foreign_key(op.f("fk_billing_payments_event_id_events"), "events", ["event_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index(op.f("ix_billing_payments_event_id"), ["event_id"])
    with op.batch_alter_table("billing_entitlements") as batch:
        batch.drop_column("credits")


def downgrade() -> None:
    with op.batch_alter_table("billing_entitlements") as batch:
        batch.add_column(sa.Column("credits", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("billing_payments") as batch:
        batch.drop_index(op.f("ix_billing_payments_event_id"))
        batch.drop_constraint(op.f("fk_billing_payments_event_id_events"), type_="foreignkey")
        batch.drop_column("texts_used")
        batch.drop_column("event_id")
    op.drop_index(op.f("ix_billing_notices_workspace_id"), table_name="billing_notices")
    op.drop_table("billing_notices")
