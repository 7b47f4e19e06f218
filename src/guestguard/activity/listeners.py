"""Built-in listener (a default plugin): deliveries of invitations reach the
event's activity feed through the outbox's domain events, so the outbox
needs to know nothing of events."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from guestguard.activity import feed
from guestguard.context import context_of
from guestguard.events.invitations import TEMPLATE
from guestguard.events.models import Guest
from guestguard.notifications.suppression import REASONS
from guestguard.plugins import hookimpl

OUTCOMES = ("notification.sent", "notification.failed", "notification.suppressed")
CHANNEL_WORDS = {"email": "by email", "sms": "by text message", "push": "by push notification"}


def _guest_id(event) -> uuid.UUID | None:
    try:
        return uuid.UUID(str((event.data.get("about") or {}).get("guest_id")))
    except ValueError:
        return None


@hookimpl
def domain_events(events, request):
    """A batch at once: the guests of its invitations' outcomes are read
    with one query, and their feed items are written together at the end
    of the listener's transaction."""
    outcomes = [event for event in events if event.name in OUTCOMES and event.data.get("template") == TEMPLATE]
    wanted = {guest_id for guest_id in map(_guest_id, outcomes) if guest_id is not None}
    if not wanted:
        return
    # Reading the guests needs none of the items this transaction has added
    # yet: they are written together at its end.
    with request.db.no_autoflush:
        guests = {guest.id: guest for guest in request.db.scalars(select(Guest).where(Guest.id.in_(wanted)))}
    ctx = context_of(request)
    for event in outcomes:
        guest = guests.get(_guest_id(event))
        if guest is not None:  # else removed from the list meanwhile
            _add_item(ctx, request, event, guest)


def _add_item(ctx, request, event, guest: Guest) -> None:
    channel = event.data["channel"]
    declared = request.registry["notifications.channels"].get(channel)  # a plugin's: its label
    how = CHANNEL_WORDS.get(channel) or f"by {declared.label if declared and declared.label else channel}"
    if event.name == "notification.sent":
        summary = f"Invitation sent to {guest.name} {how}"
    elif event.name == "notification.suppressed":
        summary = (f"Invitation to {guest.name} was not sent {how}: "
                   f"{REASONS.get(event.data.get('reason'), 'the address is suppressed')}")
    else:
        reason = str(event.data.get("error", "")).partition(": ")[2] or "the provider refused it"
        summary = f"Invitation to {guest.name} could not be sent {how}: {reason}"
    feed.add(ctx, workspace_id=guest.workspace_id, event_id=guest.event_id, guest_id=guest.id,
             kind=event.name, summary=summary,
             data={"channel": event.data["channel"], "notification_id": event.data["notification_id"]})
