"""Removing a guest, undoing it, and purging who stays removed.

Removing marks the guest (``removed_at``): from then on no ORM query sees
them (``models._hide_removed_guests``) and their link opens nothing
(``guard.access.LOOK_UP``). For ``guests.undo_seconds`` the host can put
them back as they were, answer and link included. After that the worker's
minute task erases what every area holds about them (the privacy jobs, as
forgetting does) and deletes the row, so nothing personal lingers.

Locks, in the order every path takes them: the event's places lock, the
event's row, the guest's links, the guest's row.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import select

from guestguard.activity import feed
from guestguard.audit.services import record
from guestguard.billing import services as billing
from guestguard.billing.plans import GUESTS
from guestguard.context import context_of
from guestguard.db import ALL_ROWS, lock_row, utcnow
from guestguard.events.models import YES, Event, Guest, InvitationLink
from guestguard.events.seats import fill_places, lock_places, seat
from guestguard.events.services import CONTACTS, EventsError, guests_with
from guestguard.privacy.services import erase_guest, lock_links

log = logging.getLogger(__name__)

# Removed guests one purge transaction handles; the next minute takes the rest.
PURGE_BATCH = 200


def undo_window(settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings["guests.undo_seconds"])


def _locked_guest(db, event_id: uuid.UUID, guest_id: uuid.UUID) -> Guest | None:
    """The event's guest, listed or removed, locked and read afresh."""
    lock_row(db, Guest, guest_id)
    return db.scalar(select(Guest).where(Guest.id == guest_id, Guest.event_id == event_id)
                     .execution_options(populate_existing=True, **{ALL_ROWS: True}))


def remove_guest(ctx, event: Event, guest: Guest) -> dt.datetime:
    """Take the guest off the list (a place they held goes to the
    waitlist). Returns the moment the undo stops being offered. Removing a
    guest being removed at the same moment changes nothing more."""
    db = ctx.db
    lock_places(db, event.id)
    guest = _locked_guest(db, event.id, guest.id)
    window = undo_window(ctx.settings)
    if guest.removed_at is not None:
        return guest.removed_at + window
    seated = guest.response == YES and guest.waitlisted_at is None
    guest.removed_at = utcnow()
    record(ctx, "guest.deleted", actor_id=ctx.actor_id, workspace_id=guest.workspace_id,
           target_type="guest", target_id=guest.id)
    # The feed names no one: the line outlives the guest's purge.
    feed.add(ctx, workspace_id=event.workspace_id, event_id=event.id, guest_id=None, kind="guest.removed",
             summary="A guest was removed from the list")
    if seated and event.capacity is not None:
        db.flush()
        fill_places(ctx, event)
    return guest.removed_at + window


def restore_guest(ctx, event: Event, guest_id: uuid.UUID) -> Guest:
    """Put a removed guest back as they were, within the undo window.
    Restoring a guest already back returns them unchanged (a double click,
    a retry). Refused: 404 for a guest this event never had or already
    purged, 409 ``undo_expired`` past the window, 409 ``conflict`` when
    another guest took their address meanwhile, 402 past the plan's limit.
    A guest who held a place gets it back if it is still free, else joins
    the waitlist."""
    db = ctx.db
    lock_places(db, event.id)
    lock_row(db, Event, event.id)
    guest = _locked_guest(db, event.id, guest_id)
    if guest is None:
        raise EventsError(404, "not_found", "This guest is no longer on the list and cannot be put back: "
                                            "add them again.")
    if guest.removed_at is None:
        return guest
    window = undo_window(ctx.settings)
    if utcnow() > guest.removed_at + window:
        raise EventsError(409, "undo_expired",
                          f"Too late to undo: {guest.name} was removed more than {window.seconds} seconds ago "
                          "and is being deleted for good. Add them again to put them back on the list.")
    for field, words in CONTACTS.items():
        other = guests_with(db, event.id, field, [getattr(guest, field)]).get(getattr(guest, field))
        if other is not None:
            raise EventsError(409, "conflict", f"{guest.name} cannot be put back: {other.name} was added "
                                               f"with the same {words} since.",
                              existing_guest_id=str(other.id), field=field)
    billing.charge(ctx, event.workspace_id, GUESTS, 1, event.id)
    guest.removed_at = None
    if guest.response == YES:
        db.flush()
        guest.waitlisted_at = seat(db, event, guest.id, None, guest.waitlisted_at, YES,
                                   guest.plus_ones_coming, utcnow())
    record(ctx, "guest.restored", actor_id=ctx.actor_id, workspace_id=guest.workspace_id,
           target_type="guest", target_id=guest.id)
    feed.add(ctx, workspace_id=event.workspace_id, event_id=event.id, guest_id=guest.id, kind="guest.restored",
             summary=f"{guest.name} was put back on the list")
    return guest


def purge_removed(request, now: dt.datetime | None = None) -> int:
    """Periodic task: erase and delete guests removed longer ago than the
    undo window, one per transaction (an undo racing the purge either wins
    and keeps the guest, or finds them gone). Returns guests purged."""
    ctx = context_of(request)
    cutoff = (now or utcnow()) - undo_window(ctx.settings)
    with ctx.tm:
        due = list(ctx.db.execute(
            select(Guest.id, Guest.event_id).where(Guest.removed_at < cutoff).order_by(Guest.removed_at)
            .limit(PURGE_BATCH).execution_options(**{ALL_ROWS: True})).all())
    purged = 0
    for guest_id, event_id in due:
        with ctx.tm:
            purged += purge_guest(ctx, event_id, guest_id, cutoff)
    if purged:
        log.info("guests: %d removed guest(s) purged", purged)
    return purged


def purge_guest(ctx, event_id: uuid.UUID, guest_id: uuid.UUID, cutoff: dt.datetime) -> int:
    """Erase and delete one guest still removed since before ``cutoff``; 1 if done."""
    db = ctx.db
    lock_links(db, InvitationLink.guest_id == guest_id)
    guest = _locked_guest(db, event_id, guest_id)
    if guest is None or guest.removed_at is None or guest.removed_at >= cutoff:
        return 0
    erase_guest(ctx, guest)
    db.delete(guest)
    # Ids only: the trail says a removed guest was purged, never who.
    record(ctx, "guest.purged", workspace_id=guest.workspace_id, target_type="guest", target_id=guest.id,
           event_id=str(event_id))
    return 1
