"""Duplicating an event: its details, look and questions, and if asked its
guest list — never the guests' links, answers, invitations or flags. The
copy is a draft, so nothing reaches a guest until the host publishes it."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select

from guestguard.audit.services import record
from guestguard.billing import services as billing
from guestguard.db import lock_name, utcnow
from guestguard.events.models import DRAFT, Event, EventCover, Guest
from guestguard.events.schemas import DuplicateInput, localize

# What a copy keeps of the event and of each guest.
EVENT_FIELDS = ("description", "venue", "timezone", "default_plus_ones", "host_message", "reply_to",
                "invitation_channel", "host_name", "theme_colour", "ask_plus_one_names", "questions", "capacity")
GUEST_FIELDS = ("workspace_id", "name", "email", "phone", "plus_ones_allowed", "group_name", "tags", "notes",
                "preferred_channel")
# The same copy asked for again within this long (a double click, a retried
# form) is the first one, not another.
REPEAT_WINDOW = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Copy:
    event: Event
    guests: int
    created: bool  # False: the same copy was made moments ago, and is returned


def shifted(moment: dt.datetime | None, by: dt.timedelta) -> dt.datetime | None:
    return moment + by if moment is not None else None


def duplicate_event(ctx, source: Event, data: DuplicateInput) -> Copy:
    """A draft copy of ``source`` named ``data.name`` (else the same name),
    starting at ``data.starts_at`` (else the same time), its end and RSVP
    deadline moved with the start; with its guests when asked."""
    name = data.name or source.name
    starts_at = localize(data.starts_at, source.timezone) if data.starts_at else source.starts_at
    moved = starts_at - source.starts_at
    lock_name(ctx.db, f"duplicate:{source.id}", Event)
    recent = ctx.db.scalar(select(Event).where(
        Event.workspace_id == source.workspace_id, Event.created_by_id == ctx.actor_id, Event.name == name,
        Event.starts_at == starts_at, Event.deleted_at.is_(None), Event.id != source.id,
        Event.created_at > utcnow() - REPEAT_WINDOW).limit(1))
    if recent is not None:
        return Copy(recent, 0, created=False)
    # Counted against the plan like any event and its guests, before anything
    # is written: a refusal (402) leaves no half-made copy behind.
    event_id = uuid.uuid4()
    guests = guest_rows(ctx.db, source) if data.with_guests else []
    billing.charge(ctx, source.workspace_id, billing.GUESTS, len(guests), event_id=event_id)
    billing.charge(ctx, source.workspace_id, billing.EVENTS)
    # On a plan without branding the copy is made in the house's look.
    branded = billing.has_feature(ctx, source.workspace_id, billing.BRANDING)
    fields = {field: getattr(source, field) for field in EVENT_FIELDS}
    if not branded:
        fields["theme_colour"] = ""
    event = Event(id=event_id, workspace_id=source.workspace_id, created_by_id=ctx.actor_id, name=name, status=DRAFT,
                  starts_at=starts_at, ends_at=shifted(source.ends_at, moved),
                  rsvp_deadline=shifted(source.rsvp_deadline, moved), **fields)
    ctx.db.add(event)
    ctx.db.flush()
    if source.cover_id is not None and branded:
        copy_cover(ctx.db, source, event)
    if guests:
        ctx.db.execute(insert(Guest), [{**row._asdict(), "event_id": event.id} for row in guests])
    record(ctx, "event.duplicated", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, source_id=str(source.id), guests=len(guests))
    ctx.emit("event.created", {"event_id": str(event.id), "name": event.name}, event.workspace_id)
    return Copy(event, len(guests), created=True)


def copy_cover(db, source: Event, event: Event) -> None:
    cover = db.get(EventCover, source.cover_id)
    if cover is None:
        return
    copied = EventCover(workspace_id=event.workspace_id, event_id=event.id, content_type=cover.content_type,
                        width=cover.width, height=cover.height, data=cover.data)
    db.add(copied)
    db.flush()
    event.cover_id = copied.id


def guest_rows(db, source: Event) -> list:
    """What a copy keeps of each guest, in one read."""
    return list(db.execute(select(*(getattr(Guest, field) for field in GUEST_FIELDS))
                           .where(Guest.event_id == source.id).order_by(Guest.name, Guest.id)).all())
