from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from guestguard.accounts.models import User
from guestguard.db import Base, IdMixin, TimestampMixin, utcnow


class Workspace(IdMixin, TimestampMixin, Base):
    """The tenant: every tenant-owned row carries its ``workspace_id``."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    personal: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Months after an event ends before its guests are anonymized; None:
    # privacy.retention_months.
    retention_months: Mapped[int | None] = mapped_column(default=None)
    # How readily the guard's rules flag this workspace's links: relaxed,
    # normal or strict (guestguard.guard.sensitivity).
    guard_sensitivity: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")

    memberships: Mapped[list[Membership]] = relationship(back_populates="workspace")


class Membership(IdMixin, TimestampMixin, Base):
    __tablename__ = "memberships"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    workspace: Mapped[Workspace] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)


class Invitation(IdMixin, Base):
    """An invitation to join a workspace with a role; its emailed token is
    single use and only its hash is stored."""

    __tablename__ = "workspace_invitations"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    accepted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    workspace: Mapped[Workspace] = relationship(lazy="joined")

    def is_pending(self, now: dt.datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now


class ApiKey(IdMixin, Base):
    """A workspace credential for integrations: ``ggk_<lookup>_<secret>``.
    The lookup id finds the row; only the secret's SHA-256 is stored."""

    __tablename__ = "api_keys"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    workspace: Mapped[Workspace] = relationship(lazy="joined")
