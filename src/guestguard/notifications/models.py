from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, TimestampMixin
from guestguard.tasks import DurableJobMixin

CHANNELS = ("email", "sms", "push")


class Notification(IdMixin, TimestampMixin, DurableJobMixin, Base):
    """One message to one person: the row exists (with a status) before any
    task tries to send it, so nothing is lost when a worker dies."""

    __tablename__ = "notifications"

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(100))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the message is about ({"event_id": ..., "guest_id": ...}): handed
    # on with the notification.sent / notification.failed domain events.
    about: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Values that must not rest in the database readable (links carrying
    # tokens): encrypted with a key derived from app.secret, dropped once the
    # notification reaches a final status.
    sealed_context: Mapped[str | None] = mapped_column(Text, default=None)
    provider: Mapped[str | None] = mapped_column(String(64), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Email: the Message-ID header, fixed when the row is made and sent with
    # every attempt, so copies of a message sent twice fold into one.
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_notifications_recipient", "recipient"),)
