"""Scheduled messages: one durable row per recipient and occurrence."""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow

SCHEDULED, SENT, SKIPPED, MISSED = "scheduled", "sent", "skipped", "missed"
STATES = (SCHEDULED, SENT, SKIPPED, MISSED)


class ScheduledMessage(IdMixin, Base):
    """One reminder to one guest: ``rule`` names the occurrence ("7d" before
    the start). Unique per guest and rule, so nothing is sent twice however
    many workers plan and claim at once. ``scheduled`` rows are claimed when
    due; each ends ``sent`` (queued in the outbox, whose suppression and
    quiet hours apply), ``skipped`` (no longer eligible: ``reason`` says why)
    or ``missed`` (found too late to be worth sending)."""

    __tablename__ = "scheduled_messages"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(16), default=SCHEDULED)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (
        UniqueConstraint("guest_id", "rule"),
        Index("ix_scheduled_messages_due", "state", "due_at"),
    )
