"""Capacity and the waitlist.

An event may have a ``capacity``: places for the guests who said yes and
their plus-ones. A yes that does not fit joins the waitlist (the guest's
``waitlisted_at``, which orders it); a guest already seated who asks for
more places than are left is refused, keeping the place they have. Whenever
places free up (a no, fewer plus-ones, a guest removed, a larger capacity)
the waitlist is filled in order, strictly: the first waiting party that does
not fit stops the promotions behind it. A promoted guest is told by email
or text message.

Deciding who gets a place happens under the event's places lock
(``lock_places``), taken before any guest's row lock, by every path that
seats or promotes, so two guests taking the last place at once cannot both
get it, and the two locks are always taken in the same order.
"""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select

from guestguard.activity import feed
from guestguard.audit.services import record
from guestguard.db import lock_name
from guestguard.events.models import YES, Event, Guest
from guestguard.events.services import EventsError
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import GUEST_MESSAGE

PROMOTED_TEMPLATE = "waitlist_promoted"


def lock_places(db, event_id: uuid.UUID) -> None:
    lock_name(db, f"places:{event_id}", Guest)


def places_taken(db, event_id: uuid.UUID, *, besides: uuid.UUID | None = None) -> int:
    """Places held by seated yes-answers (``besides`` that guest's)."""
    query = select(func.coalesce(func.sum(1 + Guest.plus_ones_coming), 0)).where(
        Guest.event_id == event_id, Guest.response == YES, Guest.waitlisted_at.is_(None))
    if besides is not None:
        query = query.where(Guest.id != besides)
    return int(db.scalar(query))


def seat(db, event, guest_id: uuid.UUID, previous: str | None, waitlisted_at: dt.datetime | None,
         response: str, plus_ones: int, now: dt.datetime) -> dt.datetime | None:
    """Under the places lock: the ``waitlisted_at`` the guest's new answer
    gets (None: seated, or not a yes). EventsError 409 for a seated guest
    asking for more places than are left."""
    if response != YES or event.capacity is None:
        return None
    free = event.capacity - places_taken(db, event.id, besides=guest_id)
    needed = 1 + plus_ones
    if previous == YES and waitlisted_at is None:
        if needed > free:
            others = max(free - 1, 0)
            raise EventsError(409, "event_full",
                              f"Only {free} place{'' if free == 1 else 's'} left: you can bring up to "
                              f"{others} guest{'' if others == 1 else 's'}, or keep the places you have.",
                              fields={"plus_ones": f"must be at most {others}: the event is almost full"})
        return None
    ahead = db.scalar(select(func.count()).select_from(Guest).where(
        Guest.event_id == event.id, Guest.waitlisted_at.is_not(None), Guest.id != guest_id,
        Guest.waitlisted_at < (waitlisted_at or now)))
    if needed <= free and not ahead:
        return None
    return waitlisted_at or now


def waitlist_position(db, guest) -> int:
    """1 for the first in line."""
    return 1 + int(db.scalar(select(func.count()).select_from(Guest).where(
        Guest.event_id == guest.event_id, Guest.waitlisted_at.is_not(None),
        (Guest.waitlisted_at < guest.waitlisted_at)
        | ((Guest.waitlisted_at == guest.waitlisted_at) & (Guest.id < guest.id)))))


def fill_places(ctx, event: Event) -> list[Guest]:
    """Promote waiting guests, in order, while their party fits; tell each.
    Takes the places lock (again: it is re-entrant within a transaction on
    PostgreSQL and a no-op once SQLite's write lock is held)."""
    db = ctx.db
    lock_places(db, event.id)
    waiting = list(db.scalars(select(Guest).where(Guest.event_id == event.id, Guest.waitlisted_at.is_not(None))
                              .order_by(Guest.waitlisted_at, Guest.id)
                              .execution_options(populate_existing=True)))
    if not waiting:
        return []
    free = None if event.capacity is None else event.capacity - places_taken(db, event.id)
    promoted = []
    for guest in waiting:
        needed = 1 + guest.plus_ones_coming
        if free is not None and needed > free:
            break
        guest.waitlisted_at = None
        if free is not None:
            free -= needed
        promoted.append(guest)
        _tell_promoted(ctx, event, guest)
    return promoted


def _tell_promoted(ctx, event: Event, guest: Guest) -> None:
    record(ctx, "rsvp.promoted", workspace_id=guest.workspace_id, target_type="guest", target_id=guest.id,
           event_id=str(event.id))
    ctx.emit("rsvp.promoted", {"event_id": str(event.id), "guest_id": str(guest.id)}, guest.workspace_id)
    feed.add(ctx, workspace_id=guest.workspace_id, event_id=event.id, guest_id=guest.id, kind="rsvp.promoted",
             summary=f"{guest.name} got a place from the waitlist")
    from guestguard.events.invitations import EMAIL, SMS, message_context

    serves = ctx.registry["notifications.providers"]
    for channel, address in ((EMAIL, guest.email), (SMS, guest.phone)):
        if address and channel in serves:
            queue_notification(ctx, channel=channel, recipient=address, template=PROMOTED_TEMPLATE,
                               workspace_id=event.workspace_id, context=message_context(ctx, event, guest),
                               about={"event_id": str(event.id), "guest_id": str(guest.id)}, kind=GUEST_MESSAGE)
            return
