from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, TimestampMixin, utcnow

DRAFT, PUBLISHED, CANCELLED = "draft", "published", "cancelled"
EVENT_STATUSES = (DRAFT, PUBLISHED, CANCELLED)
YES, NO, MAYBE = "yes", "no", "maybe"
RESPONSES = (YES, NO, MAYBE)


class Event(IdMixin, TimestampMixin, Base):
    __tablename__ = "events"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    venue: Mapped[str] = mapped_column(String(300), default="")
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    timezone: Mapped[str] = mapped_column(String(64))
    rsvp_deadline: Mapped[dt.datetime | None] = mapped_column(default=None)
    default_plus_ones: Mapped[int] = mapped_column(default=0)
    host_message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_events_workspace_starts", "workspace_id", "starts_at"),)


class Guest(IdMixin, TimestampMixin, Base):
    """One invitee. The current answer and invitation state are kept on the
    row (the history lives in ``rsvps``) so a page of the list is one query."""

    __tablename__ = "guests"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    plus_ones_allowed: Mapped[int] = mapped_column(default=0)
    group_name: Mapped[str] = mapped_column(String(100), default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    response: Mapped[str | None] = mapped_column(String(8), default=None)
    plus_ones_coming: Mapped[int] = mapped_column(default=0)
    responded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    invited_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Flags awaiting the host's review, kept here so the list needs no join.
    open_flags: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("event_id", "email"),
        # Keyset pagination of an event's list, by name then id.
        Index("ix_guests_event_name_id", "event_id", "name", "id"),
    )


class InvitationLink(IdMixin, Base):
    """A guest's personal link; only the token's SHA-256 is stored. Issuing a
    new one revokes the previous."""

    __tablename__ = "invitation_links"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Rsvp(IdMixin, Base):
    """Every answer a guest gave, in order; the latest one counts."""

    __tablename__ = "rsvps"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invitation_links.id", ondelete="SET NULL"), default=None)
    response: Mapped[str] = mapped_column(String(8))
    plus_ones: Mapped[int] = mapped_column(default=0)
    dietary: Mapped[str] = mapped_column(String(500), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- the guard: access log, flags, activity, stream tickets ---------------------

VIEW, ANSWER, CALENDAR, CHECK_IN = "view", "rsvp", "calendar", "check_in"
ACCESS_KINDS = (VIEW, ANSWER, CALENDAR, CHECK_IN)
OK, REVOKED, EXPIRED, UNKNOWN = "ok", "revoked", "expired", "unknown"
ACCESS_OUTCOMES = (OK, REVOKED, EXPIRED, UNKNOWN)
FLAG_OPEN, FLAG_DISMISSED, FLAG_RESOLVED = "open", "dismissed", "resolved"
FLAG_STATUSES = (FLAG_OPEN, FLAG_DISMISSED, FLAG_RESOLVED)


class AccessSubjectMixin:
    """Whose link a use was. Unknown tokens belong to no tenant, so their
    rows carry no workspace."""

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True, default=None)
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), default=None)
    guest_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guests.id", ondelete="CASCADE"), index=True, default=None)


class AccessEntry(IdMixin, AccessSubjectMixin, Base):
    """One use of an invitation token. Purged after ``guard.retention_days``;
    ``AccessTally`` keeps the counts."""

    __tablename__ = "access_log"

    link_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invitation_links.id", ondelete="CASCADE"), default=None)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str] = mapped_column(String(45), default="")
    network: Mapped[str] = mapped_column(String(49), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    device: Mapped[str] = mapped_column(String(120), default="")
    automated: Mapped[bool] = mapped_column(default=False)
    # When the access rules took this use in (claimed by a batch); None
    # until then. Unknown tokens' uses have no link and are never scored.
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_access_log_link_at", "link_id", "at"),
        Index("ix_access_log_pending", "at", sqlite_where=text("evaluated_at IS NULL AND link_id IS NOT NULL"),
              postgresql_where=text("evaluated_at IS NULL AND link_id IS NOT NULL")),
    )


class AccessTally(IdMixin, AccessSubjectMixin, Base):
    """Uses per guest, day, kind and outcome, rolled up from purged log rows."""

    __tablename__ = "access_tallies"

    day: Mapped[dt.date]
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    automated: Mapped[bool] = mapped_column(default=False)
    uses: Mapped[int] = mapped_column(default=0)


class Flag(IdMixin, Base):
    """A finding of an access rule about a guest's link, for the host to
    review. The guest sees nothing of it."""

    __tablename__ = "flags"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invitation_links.id", ondelete="SET NULL"), default=None)
    rule: Mapped[str] = mapped_column(String(64))
    score: Mapped[int]
    evidence: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=FLAG_OPEN)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    closed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)

    __table_args__ = (
        Index("ix_flags_event_created_id", "event_id", "created_at", "id"),
        # One open flag per guest, link and rule, even when two workers
        # evaluate uses of the same link at once.
        Index("uq_flags_open_rule", "guest_id", "link_id", "rule", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    )


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
