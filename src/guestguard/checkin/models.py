"""Passes and the door: a guest's pass (after a yes), each person let in,
and each scan a door sent (so a repeated scan gets the first answer)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow


class GuestPass(IdMixin, Base):
    """The pass that came with one invitation link: the QR's secret (only its
    SHA-256 here) and a short code to type. It works while its link does:
    issuing a new link or revoking it revokes the pass."""

    __tablename__ = "guest_passes"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invitation_links.id", ondelete="CASCADE"), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("event_id", "code"),)


class PassSecret(IdMixin, Base):
    """A further secret of a pass, made for one reminder's QR code (the
    pass's own secret comes from the invitation token, which is not kept):
    only its SHA-256 here, the secret itself sealed in the message until it
    is sent. It opens the door like the pass's own, while the pass's link
    works."""

    __tablename__ = "pass_secrets"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    pass_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guest_passes.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Admission(IdMixin, Base):
    """One person let in: the guest (seat 0) or one of their plus-ones
    (seats 1, 2, ...). At most one live admission per guest and seat: the
    unique index is what makes a check-in happen once however many doors
    scan the pass at the same moment."""

    __tablename__ = "admissions"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"))
    seat: Mapped[int]
    scan_id: Mapped[str] = mapped_column(String(64))
    admitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    admitted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    # Who let them in, as the door shows it ("by Sam"): kept when the
    # account goes.
    admitted_by: Mapped[str] = mapped_column(String(100), default="")
    undone_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    undone_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)

    __table_args__ = (
        Index("uq_admissions_live_seat", "guest_id", "seat", unique=True,
              sqlite_where=text("undone_at IS NULL"), postgresql_where=text("undone_at IS NULL")),
        Index("ix_admissions_event_scan", "event_id", "scan_id"),
    )


class DoorScan(IdMixin, Base):
    """One scan a door sent, by the id the door made for it, with the answer
    it got: the same scan sent again (a retry after a lost answer) gets that
    answer, and changes nothing."""

    __tablename__ = "door_scans"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    scan_id: Mapped[str] = mapped_column(String(64))
    guest_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guests.id", ondelete="SET NULL"), default=None)
    scanned_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[int] = mapped_column(default=0)
    answer: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (UniqueConstraint("event_id", "scan_id"),)
