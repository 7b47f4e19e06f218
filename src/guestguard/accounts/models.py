from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from guestguard.db import Base, IdMixin, TimestampMixin, utcnow

PLATFORM_ROLES = ("user", "admin")
VERIFY_EMAIL, RESET_PASSWORD = "verify_email", "reset_password"
WEB, API = "web", "api"


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    privacy_accepted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    terms_accepted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None


class UserToken(IdMixin, Base):
    """A single-use emailed token (verification, password reset); only its
    SHA-256 is stored."""

    __tablename__ = "user_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuthSession(IdMixin, Base):
    """One login on one device. A web session is found by the hash of its
    cookie token; an API session by the ``sid`` of its access tokens and by
    its refresh tokens."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(64), default=None)

    user: Mapped[User] = relationship(lazy="joined")

    def is_active(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


class RefreshToken(IdMixin, Base):
    """A refresh token of an API session; it rotates on every use, and
    presenting a rotated one revokes the whole session."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
