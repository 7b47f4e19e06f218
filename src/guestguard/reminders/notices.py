"""Change notices: when the host changes an event's time or place, or
cancels it, the guests who said yes or maybe can be told, once the host has
seen who gets the notice and confirmed.

Each change guests' calendars must follow bumps ``events.sequence`` (the
.ics file's SEQUENCE, with the same UID). A notice is sent for the current
sequence, one ``scheduled_messages`` row per guest (rule ``notice-<n>``,
unique per guest): two clicks at once, or a repeat, tell each guest once.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from guestguard.audit.services import record
from guestguard.db import insert_ignoring_conflict, lock_name, utcnow
from guestguard.events.invitations import address_for, choose_channel, guest_message_context
from guestguard.events.models import CANCELLED, MAYBE, YES, Event, Guest
from guestguard.events.services import EventsError
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import GUEST_MESSAGE
from guestguard.reminders.models import SENT, SKIPPED, ScheduledMessage
from guestguard.reminders.services import NOTICE_PREFIX
from guestguard.sms_segments import MessageTooLong

TEMPLATE = "change_notice"


def pending(event: Event) -> bool:
    return event.sequence > event.notified_sequence


def told(event: Event):
    """Who a notice goes to: guests who said yes (with a place) or maybe."""
    return (Guest.event_id == event.id,
            ((Guest.response == YES) & Guest.waitlisted_at.is_(None)) | (Guest.response == MAYBE))


def recipients(db, event: Event) -> list[Guest]:
    return list(db.scalars(select(Guest).where(*told(event)).order_by(Guest.name, Guest.id)))


def recipient_count(db, event: Event) -> int:
    return db.scalar(select(func.count()).select_from(Guest).where(*told(event)))


@dataclass(frozen=True)
class NoticeSent:
    queued: int
    skipped: list[dict[str, str]]


def send(ctx, event: Event, *, deleting: bool = False) -> NoticeSent:
    """Tell the guests of the latest change, once per change and guest
    (``deleting``: the event is being deleted, so their links stop working)."""
    db = ctx.db
    lock_name(db, f"notice:{event.id}", ScheduledMessage)
    db.refresh(event, ["sequence", "notified_sequence"])  # as the previous holder left it
    if not pending(event):
        raise EventsError(409, "nothing_to_tell", "Guests have been told of every change already.")
    rule = f"{NOTICE_PREFIX}{event.sequence}"
    now = utcnow()
    queued, skipped = 0, []
    for guest in recipients(db, event):
        row_id = uuid.uuid4()
        if not insert_ignoring_conflict(db, ScheduledMessage.__table__, {
                "id": row_id, "workspace_id": event.workspace_id, "event_id": event.id, "guest_id": guest.id,
                "rule": rule, "due_at": now, "state": SENT, "attempts": 1, "created_at": now, "done_at": now,
                "notification_id": None, "reason": None}, index_elements=["guest_id", "rule"]):
            continue
        try:
            channel = choose_channel(ctx, guest, None, event)
            notification = queue_notification(
                ctx, channel=channel, recipient=address_for(ctx, guest, channel), template=TEMPLATE,
                workspace_id=event.workspace_id, kind=GUEST_MESSAGE,
                context={**guest_message_context(ctx, event, guest), "cancelled": event.status == CANCELLED,
                         "deleted": deleting},
                about={"event_id": str(event.id), "guest_id": str(guest.id)})
        except (EventsError, MessageTooLong) as unsendable:
            reason = unsendable.message if isinstance(unsendable, EventsError) else str(unsendable)
            db.execute(ScheduledMessage.__table__.update().where(ScheduledMessage.__table__.c.id == row_id)
                       .values(state=SKIPPED, reason=reason[:500]))
            skipped.append({"guest_id": str(guest.id), "name": guest.name, "reason": reason})
            continue
        db.execute(ScheduledMessage.__table__.update().where(ScheduledMessage.__table__.c.id == row_id)
                   .values(notification_id=notification.id))
        queued += 1
    event.notified_sequence = event.sequence
    record(ctx, "event.change_notice_sent", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, sequence=event.sequence, queued=queued, skipped=len(skipped))
    return NoticeSent(queued, skipped)


def tell_of_deletion(ctx, event: Event) -> NoticeSent:
    """Before the host deletes ``event``: cancel it (if it is not) and tell
    the guests who said yes or maybe that it will not take place, each once,
    like any notice; guests told of its cancellation already are not told
    again."""
    if event.status != CANCELLED:
        event.status = CANCELLED
        event.sequence += 1
    if not pending(event):
        return NoticeSent(0, [])
    return send(ctx, event, deleting=True)


def dismiss(ctx, event: Event) -> None:
    """The host chose not to tell guests of this change."""
    event.notified_sequence = event.sequence
    record(ctx, "event.change_notice_dismissed", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, sequence=event.sequence)
