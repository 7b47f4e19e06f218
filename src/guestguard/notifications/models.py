from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Date, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, TimestampMixin, utcnow
from guestguard.tasks import DurableJobMixin


class Notification(IdMixin, TimestampMixin, DurableJobMixin, Base):
    """One message to one person: the row exists (with a status) before any
    task tries to send it, so nothing is lost when a worker dies."""

    __tablename__ = "notifications"

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(100))
    # Sent to a guest on a host's behalf ("guest", which an unsubscribe from
    # the workspace stops) or the person's own account mail ("account", which
    # only a bounce, a complaint, STOP or an operator stops).
    kind: Mapped[str] = mapped_column(String(16), default="account")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the message is about ({"event_id": ..., "guest_id": ...}): handed
    # on with the notification.sent / notification.failed domain events.
    about: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The guest of ``about``, in a column of its own: forgetting a guest
    # finds their messages through its index (no foreign key: the message
    # outlives the guest's deletion with the event).
    guest_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
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
    # What became of the message (notifications.delivery): moves only forward,
    # as the provider's reports arrive, in any order.
    delivery_state: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    # The state's reason in words (a bounce's type), never the address.
    delivery_detail: Mapped[str | None] = mapped_column(String(500), default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # What the provider billed, when it says (notifications.delivery.record_cost):
    # the SMS segments, and the price as its decimal text ("-0.00790") in its
    # currency ("USD").
    segments: Mapped[int | None] = mapped_column(default=None)
    price: Mapped[str | None] = mapped_column(String(16), default=None)
    price_unit: Mapped[str | None] = mapped_column(String(3), default=None)

    __table_args__ = (
        Index("ix_notifications_recipient", "recipient"),
        # A provider's report names the message by the provider's id for it.
        Index("ix_notifications_provider_message", "provider", "provider_message_id"),
    )


class Suppression(IdMixin, Base):
    """An address not to write to again (notifications.suppression)."""

    __tablename__ = "suppressions"

    channel: Mapped[str] = mapped_column(String(16))
    # Normalized: an email address lower-cased, a phone number in E.164.
    address: Mapped[str] = mapped_column(String(320))
    # EVERYWHERE, or the id of the one workspace whose guest messages stop.
    scope: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(16))
    # Who said so: a provider's name, "guest", or "operator".
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("channel", "address", "scope"),)


class DeliveryDay(Base):
    """A workspace's messages per day (UTC) and channel by what became of
    them: counted when a message reaches the state, so the counts outlive
    the messages (which privacy retention erases)."""

    __tablename__ = "delivery_days"

    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    sent: Mapped[int] = mapped_column(default=0, server_default="0")
    delivered: Mapped[int] = mapped_column(default=0, server_default="0")
    bounced: Mapped[int] = mapped_column(default=0, server_default="0")
    complained: Mapped[int] = mapped_column(default=0, server_default="0")
    failed: Mapped[int] = mapped_column(default=0, server_default="0")
    suppressed: Mapped[int] = mapped_column(default=0, server_default="0")

