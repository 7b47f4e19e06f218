"""The activity feed's items and the live stream's tickets."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow


class Activity(IdMixin, Base):
    """What happened at an event, for the host's feed: opens, answers, flags,
    deliveries. ``kind`` is the domain event's name."""

    __tablename__ = "activity"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    guest_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guests.id", ondelete="CASCADE"), index=True, default=None)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_activity_event_at_id", "event_id", "at", "id"),)


class StreamTicket(IdMixin, Base):
    """A single-use, short-lived pass to one event's live stream (browsers
    cannot send an Authorization header with EventSource). Only its SHA-256
    is stored."""

    __tablename__ = "stream_tickets"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    # The login the ticket was asked for through: signing out ends its use.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), default=None)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
