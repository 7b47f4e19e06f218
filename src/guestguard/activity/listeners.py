"""Built-in listener (a default plugin): deliveries of invitations reach the
event's activity feed through the outbox's domain events, so the outbox
needs to know nothing of events."""
from __future__ import annotations

import uuid

from guestguard.activity import feed
from guestguard.context import context_of
from guestguard.events.invitations import TEMPLATE
from guestguard.events.models import Guest
from guestguard.notifications.suppression import REASONS
from guestguard.plugins import hookimpl

OUTCOMES = ("notification.sent", "notification.failed", "notification.suppressed")
CHANNEL_WORDS = {"email": "by email", "sms": "by text message", "push": "by push notification"}


def _guest(request, about) -> Guest | None:
    try:
        guest_id = uuid.UUID(str(about.get("guest_id")))
    except ValueError:
        return None
    # Reading the guest needs none of the items this transaction has added
    # yet: they are written together at its end, not one before each read.
    with request.db.no_autoflush:
        return request.db.get(Guest, guest_id)


@hookimpl
def domain_event(event, request):
    if event.name not in OUTCOMES or event.data.get("template") != TEMPLATE:
        return
    guest = _guest(request, event.data.get("about") or {})
    if guest is None:  # removed from the list meanwhile
        return
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
    feed.add(context_of(request), workspace_id=guest.workspace_id, event_id=guest.event_id, guest_id=guest.id,
             kind=event.name, summary=summary,
             data={"channel": event.data["channel"], "notification_id": event.data["notification_id"]})
