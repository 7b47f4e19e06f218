"""The guard's records: every use of an invitation link, daily tallies of
purged uses, and flags for the host to review."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow

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
