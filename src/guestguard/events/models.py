from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, exists, false, text
from sqlalchemy.event import listens_for
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria

from guestguard.db import ALL_ROWS, Base, IdMixin, TimestampMixin, utcnow

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
    # Where guests' replies to its email go (Reply-To); None: the sender.
    reply_to: Mapped[str | None] = mapped_column(String(320), default=None)
    # The channel invitations go out on when the guest prefers none; None:
    # email when the guest has an address, else SMS.
    invitation_channel: Mapped[str | None] = mapped_column(String(16), default=None)
    # The invitation: who invites ("Hana Host invites you"), its colour as
    # a hex triplet ("" for the house's) and its cover image, if any.
    host_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    theme_colour: Mapped[str] = mapped_column(String(7), default="", server_default="")
    cover_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # What the RSVP form asks besides the answer: names of plus-ones, and
    # the host's questions (``questions.py`` describes their shape).
    ask_plus_one_names: Mapped[bool] = mapped_column(default=False, server_default=false())
    questions: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    # Places for yes-answers and their plus-ones; None: no limit.
    capacity: Mapped[int | None] = mapped_column(default=None)
    # Reminders to guests who said yes or maybe: offsets before the start,
    # "7d" (days, in the event's zone) or "3h" (hours); see reminders/.
    reminders: Mapped[list[Any]] = mapped_column(default=lambda: ["7d", "1d"],
                                                 server_default='["7d", "1d"]')
    # "2d" (days, in the event's zone) or "12h" before the RSVP deadline: a
    # "please answer" nudge to guests who have not answered; None sends none.
    answer_nudge: Mapped[str | None] = mapped_column(String(8), default=None)
    # Bumped by each change guests' calendars must follow (time, place,
    # cancelling): the .ics file's SEQUENCE. ``notified_sequence``: the
    # change guests were last told of (or the host chose not to tell).
    sequence: Mapped[int] = mapped_column(default=0, server_default="0")
    notified_sequence: Mapped[int] = mapped_column(default=0, server_default="0")
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Retention (privacy.retention): when its owners were told the guests
    # will be anonymized, and when they were.
    retention_notice_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    anonymized_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_events_workspace_starts", "workspace_id", "starts_at"),)


class EventCover(IdMixin, Base):
    """An event's cover image as guests get it: re-encoded on upload (no
    metadata survives), stored here so every web process serves it. Each
    upload is a new row (and address); the event points at its current one."""

    __tablename__ = "event_covers"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int]
    height: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


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
    # The current answer's plus-ones' names and answers to the host's
    # questions ({question id: text}), as on its ``rsvps`` row.
    plus_one_names: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    responded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # A yes that found the event full: waiting, in this order, for a place.
    waitlisted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    invited_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The channel this guest is written to on (a declared channel's name);
    # None: the event's choice.
    preferred_channel: Mapped[str | None] = mapped_column(String(16), default=None)
    # The notification that carried the latest invitation: what became of it
    # (events.deliveries) is the guest's invitation state.
    invitation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Flags awaiting the host's review, kept here so the list needs no join.
    open_flags: Mapped[int] = mapped_column(default=0, server_default="0")
    # The import that added the guest, so undoing it removes exactly its guests.
    import_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guest_imports.id", ondelete="SET NULL"), index=True, default=None)
    # When a host forgot the guest (privacy.forget): the row stays, stripped
    # of everything personal, as the tally of their answer and invitation.
    forgotten_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # When a host removed the guest: hidden at once from every ORM query
    # (``_hide_removed_guests``), restorable for ``guests.undo_seconds``,
    # then purged with everything held about them (events.removals).
    removed_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (
        # One listed guest per address; a removed guest awaiting its purge
        # does not hold the address against the host adding it again.
        Index("uq_guests_event_id_email", "event_id", "email", unique=True,
              postgresql_where=text("removed_at IS NULL"), sqlite_where=text("removed_at IS NULL")),
        Index("ix_guests_removed_at", "removed_at",
              postgresql_where=text("removed_at IS NOT NULL"), sqlite_where=text("removed_at IS NOT NULL")),
        # Keyset pagination of an event's list, by name then id.
        Index("ix_guests_event_name_id", "event_id", "name", "id"),
        Index("ix_guests_event_waitlist", "event_id", "waitlisted_at"),
    )


def is_listed(guest_id):
    """For rows of another table about a guest (``guest_id``, a column):
    the guest is on the list, not removed. Such rows are hidden with them."""
    return exists().where(Guest.id == guest_id, Guest.removed_at.is_(None))


@listens_for(Session, "do_orm_execute")
def _hide_removed_guests(state: ORMExecuteState) -> None:
    """Every ORM SELECT that reads guests (lists, counts, sends, exports,
    reminders, the guard, the API) sees only listed ones, so a removed guest
    is gone everywhere without each query remembering to say so. Loading an
    attribute of a guest already in hand is left alone; the removal's own
    code reads removed rows with the ``ALL_ROWS`` execution option. Plain
    Core statements on the table are not covered: they filter themselves."""
    if (state.is_select and not state.is_column_load and not state.is_relationship_load
            and not state.execution_options.get(ALL_ROWS)):
        state.statement = state.statement.options(LISTED_GUESTS_ONLY)


# Built once: the option is part of each statement's cache key, and one
# without bound values keeps compiled statements cached.
LISTED_GUESTS_ONLY = with_loader_criteria(Guest, lambda cls: cls.removed_at.is_(None), include_aliases=True)


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
    plus_one_names: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BulkAction(IdMixin, Base):
    """One run of a bulk action on an event (sending every invitation not yet
    sent...): who ran it, when, and what it did. Bulk actions on one event
    run one at a time (``invitations.lock_sends``), so a repeated click finds
    the work done and records a run that did nothing."""

    __tablename__ = "bulk_actions"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)


EACH, DAILY = "each", "daily"
ALERT_MODES = (EACH, DAILY)


class AnswerAlert(IdMixin, TimestampMixin, Base):
    """A host's wish to hear of an event's answers by email: each one as it
    comes (``each``) or a daily digest (``daily``, with what it has covered
    so far). No row: no email."""

    __tablename__ = "answer_alerts"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    # The daily digest covers answers recorded after this moment.
    digest_through: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("event_id", "user_id"),)
