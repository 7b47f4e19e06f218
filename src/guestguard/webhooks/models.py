from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow
from guestguard.tasks import DurableJobMixin


class InboxEntry(IdMixin, DurableJobMixin, Base):
    """One call a provider made to us, stored raw before anything acts on it.

    The (provider, event id) pair is unique: a provider repeating a delivery,
    even at the same moment, leaves one row. The worker processes it as a
    durable job (status, attempts, next_attempt_at, last_error), so a lost
    task or a failing handler is retried and nothing received is lost."""

    __tablename__ = "webhook_inbox"

    provider: Mapped[str] = mapped_column(String(64))
    # The provider's own id of the event (SNS MessageId, Twilio's SID + status...).
    event_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The body exactly as it arrived, and the request headers its handler needs.
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # What processing concluded, in words ("no notification has this message id").
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # The message the report was about, once processed (the body names its
    # address): forgetting the guest or erasing the account it went to
    # deletes the report through this index.
    notification_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)

    __table_args__ = (UniqueConstraint("provider", "event_id"),)
