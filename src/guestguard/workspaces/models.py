from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from guestguard.db import Base, IdMixin, TimestampMixin

ROLES = ("owner", "admin", "staff")


class Workspace(IdMixin, TimestampMixin, Base):
    """The tenant: every tenant-owned row carries its ``workspace_id``."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    personal: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    memberships: Mapped[list[Membership]] = relationship(back_populates="workspace")


class Membership(IdMixin, TimestampMixin, Base):
    __tablename__ = "memberships"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    workspace: Mapped[Workspace] = relationship(back_populates="memberships")

    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)
