"""billing: entitlement snapshots, usage counters, one-time payments,
dunning notices, feature flags

Revision ID: 0018
Revises: 0019
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_entitlements",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("events_limit", sa.Integer(), nullable=True),
        sa.Column("guests_limit", sa.Integer(), nullable=True),
        sa.Column("sms_limit", sa.Integer(), nullable=True),
        sa.Column("branding", sa.Boolean(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("customer_id", sa.String(length=255), nullable=True),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("price_id", sa.String(length=255), nullable=True),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("trial_used", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_entitlements_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_billing_entitlements")),
    )
    op.create_index(op.f("ix_billing_entitlements_customer_id"), "billing_entitlements", ["customer_id"])
    op.create_index(op.f("ix_billing_entitlements_subscription_id"), "billing_entitlements", ["subscription_id"])
    op.create_table(
        "billing_usage",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("meter", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_usage_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("workspace_id", "meter", "period_start", name=op.f("pk_billing_usage")),
    )
    op.create_table(
        "billing_payments",
        sa.Column("payment_id", sa.String(length=255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_payments_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_billing_payments")),
    )
    op.create_index(op.f("ix_billing_payments_workspace_id"), "billing_payments", ["workspace_id"])
    op.create_table(
        "billing_dunning_notices",
        sa.Column("invoice_id", sa.String(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_billing_dunning_notices_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("invoice_id", "attempt", name=op.f("pk_billing_dunning_notices")),
    )
    op.create_index(op.f("ix_billing_dunning_notices_workspace_id"), "billing_dunning_notices", ["workspace_id"])
    op.create_table(
        "feature_flags",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_feature_flags_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_flags")),
        sa.UniqueConstraint("name", "workspace_id", name=op.f("uq_feature_flags_name")),
    )
    op.create_index(op.f("ix_feature_flags_workspace_id"), "feature_flags", ["workspace_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_feature_flags_workspace_id"), table_name="feature_flags")
    op.drop_table("feature_flags")
    op.drop_index(op.f("ix_billing_dunning_notices_workspace_id"), table_name="billing_dunning_notices")
    op.drop_table("billing_dunning_notices")
    op.drop_index(op.f("ix_billing_payments_workspace_id"), table_name="billing_payments")
    op.drop_table("billing_payments")
    op.drop_table("billing_usage")
    op.drop_index(op.f("ix_billing_entitlements_subscription_id"), table_name="billing_entitlements")
    op.drop_index(op.f("ix_billing_entitlements_customer_id"), table_name="billing_entitlements")
    op.drop_table("billing_entitlements")
