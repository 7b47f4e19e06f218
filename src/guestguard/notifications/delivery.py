"""What became of a message after the provider took it: delivered, bounced,
complained... as providers report it, late and in any order.

A notification's ``delivery_state`` only moves forward: queued < sent <
delivered < a final state (bounced, complained, failed, suppressed). A
report that would move it back (a late "sent" after "delivered", a
"delivered" after a bounce) changes nothing, so reports may arrive
repeated and out of order and leave the state the latest fact made it.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import object_session

from guestguard.db import is_sqlite, sqlite_write_lock, utcnow
from guestguard.notifications.models import DeliveryDay, Notification
from guestguard.notifications.suppression import COMPLAINT, HARD_BOUNCE, AddressError, suppress

log = logging.getLogger(__name__)

QUEUED, SENT, DELIVERED = "queued", "sent", "delivered"
BOUNCED, COMPLAINED, FAILED, SUPPRESSED = "bounced", "complained", "failed", "suppressed"
# How far along each state is; a state moves only to a higher rank, so the
# final ones (the highest) never change.
RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, BOUNCED: 3, COMPLAINED: 3, FAILED: 3, SUPPRESSED: 3}
DELIVERY_STATES = tuple(RANK)
# The states a workspace's daily counts keep (DeliveryDay's columns).
DAY_COLUMNS = (SENT, DELIVERED, BOUNCED, COMPLAINED, FAILED, SUPPRESSED)
# What a provider may report, with the domain event it becomes and the
# suppression it brings (a hard bounce, a complaint: never write again).
REPORTS = {
    SENT: (None, None),
    DELIVERED: ("notification.delivered", None),
    BOUNCED: ("notification.bounced", HARD_BOUNCE),
    COMPLAINED: ("notification.complained", COMPLAINT),
    FAILED: ("notification.failed", None),
}


def moves_forward(current: str | None, new: str) -> bool:
    return RANK[new] > RANK.get(current or QUEUED, 0)


def set_delivery_state(notification: Notification, state: str, detail: str | None = None,
                       at: dt.datetime | None = None) -> bool:
    """Move the notification to ``state`` if that is forward; whether it moved."""
    if not moves_forward(notification.delivery_state, state):
        return False
    notification.delivery_state = state
    notification.delivery_detail = detail[:500] if detail else None
    if state == DELIVERED:
        notification.delivered_at = at or utcnow()
    count_day(notification, state, at or utcnow())
    return True


def count_day(notification: Notification, state: str, at: dt.datetime) -> None:
    """Add the message to its workspace's count of ``state`` for the day, in
    the transaction that moved it there (so each message counts once per
    state). Messages of no workspace (a person's account mail) are not
    counted."""
    session = object_session(notification)
    if notification.workspace_id is None or session is None or state not in DAY_COLUMNS:
        return
    column = getattr(DeliveryDay, state)
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    key = {"workspace_id": notification.workspace_id, "day": at.astimezone(dt.UTC).date(),
           "channel": notification.channel}
    session.execute(insert(DeliveryDay).values(**key, **{state: 1}).on_conflict_do_update(
        index_elements=list(key), set_={state: column + 1}))


def announce(ctx, notification: Notification, name: str, **extra: Any) -> None:
    """An outcome, as a domain event (never the recipient's address)."""
    ctx.emit(name, {"notification_id": str(notification.id), "channel": notification.channel,
                    "template": notification.template, "about": dict(notification.about or {}),
                    **extra}, notification.workspace_id)


def advance_delivery(ctx, provider: str, provider_message_id: str, state: str,
                     detail: str | None = None, at: dt.datetime | None = None) -> str:
    """Apply a provider's report about the message it knows as
    ``provider_message_id``: the state moves forward or not at all; a move
    emits ``notification.<state>`` (``notification.failed`` with ``error``
    for ``failed``) and a hard bounce or a complaint puts the address on the
    suppression list. Returns what was done, in words (for the webhook
    inbox's note); a message id no notification has is no error."""
    if state not in REPORTS:
        raise ValueError(f"{state!r} is not a delivery report (one of {', '.join(REPORTS)})")
    if is_sqlite(ctx.db):  # FOR UPDATE is no lock there: two reports of one message would both move it
        sqlite_write_lock(ctx.db, Notification)
    notification = ctx.db.scalars(
        select(Notification)
        .where(Notification.provider == provider, Notification.provider_message_id == provider_message_id)
        .limit(1).with_for_update()).first()
    if notification is None:
        return f"no notification sent through {provider} has message id {provider_message_id!r}: nothing to update"
    before = notification.delivery_state
    if not set_delivery_state(notification, state, detail, at):
        return f"notification {notification.id} is {before}: a later report, {state}, changes nothing"
    event, reason = REPORTS[state]
    note = f"notification {notification.id}: {before} -> {state}"
    if reason is not None:
        try:
            suppress(ctx, notification.channel, notification.recipient, reason, source=provider)
        except AddressError:  # a recipient no list can hold (a push token): nothing to stop
            note += " (the recipient is not an address the suppression list can hold)"
    if event == "notification.failed":
        announce(ctx, notification, event, error=f"undelivered: {detail or state}")
    elif event is not None:
        announce(ctx, notification, event, **({"detail": detail} if detail else {}))
    log.info("notification %s: %s reports %s", notification.id, provider, state)
    return note
