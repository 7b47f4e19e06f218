"""a guest-list preview keeps its checked rows, so the import of the same
file does not check every row again

Revision ID: 0021
Revises: 0022
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0022"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("guest_imports", sa.Column("checks", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("guest_imports", "checks")
