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
import functools
import logging
import re
import uuid
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, object_session

from guestguard.db import is_sqlite, sqlite_write_lock, utcnow
from guestguard.notifications.models import DeliveryDay, Notification
from guestguard.notifications.suppression import COMPLAINT, HARD_BOUNCE, AddressError, suppress
from guestguard.webhooks.services import reports_on

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
                       at: dt.datetime | None = None, counts: DayCounts | None = None) -> bool:
    """Move the notification to ``state`` if that is forward; whether it
    moved. ``counts``: where a batch collects its day counts (else counted
    at once)."""
    if not moves_forward(notification.delivery_state, state):
        return False
    notification.delivery_state = state
    notification.delivery_detail = detail[:500] if detail else None
    if state == DELIVERED:
        notification.delivered_at = at or utcnow()
    if state == SENT:  # counted when the send's success is recorded (``services.sent_values``)
        return True
    if counts is not None:
        counts.add(notification, state, at or utcnow())
    else:
        count_day(notification, state, at or utcnow())
    return True


class DayCounts:
    """The day counts of a batch's messages, added up and written with one
    statement per workspace, day, channel and state (``write``) in the
    batch's transaction: each message still counts once per state."""

    def __init__(self):
        self.counts: dict[tuple[uuid.UUID, dt.date, str, str], int] = {}

    def add(self, notification: Notification, state: str, at: dt.datetime) -> None:
        if notification.workspace_id is None or state not in DAY_COLUMNS:
            return
        key = (notification.workspace_id, at.astimezone(dt.UTC).date(), notification.channel, state)
        self.counts[key] = self.counts.get(key, 0) + 1

    def write(self, session) -> None:
        """``session``: a session, or a plain connection."""
        dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
        for (workspace_id, day, channel, state), count in sorted(self.counts.items(), key=str):
            session.execute(_add_to_day(dialect.name, state), {
                "workspace_id": workspace_id, "day": day, "channel": channel, "count": count})
        self.counts.clear()


@functools.cache
def _add_to_day(dialect: str, state: str):
    """The upsert adding ``:count`` to a day's ``state``, built once per
    dialect and state (a batch writes one per workspace, day and channel)."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    key = ("workspace_id", "day", "channel")
    return (insert(DeliveryDay)
            .values(**{column: bindparam(column) for column in key}, **{state: bindparam("count")})
            .on_conflict_do_update(index_elements=list(key),
                                   set_={state: getattr(DeliveryDay, state) + bindparam("count")}))


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
    ctx.emit(*outcome_event(notification, name, **extra))


def outcome_event(notification: Any, name: str, **extra: Any) -> tuple[str, dict[str, Any], uuid.UUID | None]:
    """``announce``'s event as (name, data, workspace id), for a caller that
    emits a batch's together (``domain.emit_many``); ``notification``: the
    model, or a row with its id, channel, template, about and workspace_id."""
    return name, {"notification_id": str(notification.id), "channel": notification.channel,
                  "template": notification.template, "about": dict(notification.about or {}),
                  **extra}, notification.workspace_id


def sent_through(ctx, provider: str, provider_message_id: str) -> Notification | None:
    """The notification ``provider`` knows as ``provider_message_id``, locked."""
    if is_sqlite(ctx.db):  # FOR UPDATE is no lock there: two reports of one message would both move it
        sqlite_write_lock(ctx.db, Notification)
    notification = ctx.db.scalars(
        select(Notification)
        .where(Notification.provider == provider, Notification.provider_message_id == provider_message_id)
        .limit(1).with_for_update()).first()
    if notification is not None:
        reports_on(notification.id)
    return notification


def unknown(provider: str, provider_message_id: str) -> str:
    return f"no notification sent through {provider} has message id {provider_message_id!r}: nothing to update"


PRICE = re.compile(r"-?[0-9]{1,6}(\.[0-9]{1,8})?")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_SEGMENTS = 100


def record_cost(ctx, provider: str, provider_message_id: str, *, segments: str | int | None = None,
                price: str | None = None, price_unit: str | None = None) -> str:
    """Keep what the provider says a message it sent cost: its segments and
    its price (decimal text, as the provider writes it) in a currency
    (ISO 4217). Values that are not such are left out and named in the
    returned note; a later report replaces an earlier one."""
    notification = sent_through(ctx, provider, provider_message_id)
    if notification is None:
        return unknown(provider, provider_message_id)
    kept, ignored = [], []
    if segments not in (None, ""):
        text = str(segments)
        if text.isdigit() and 0 < int(text) <= MAX_SEGMENTS:
            notification.segments = int(text)
            kept.append(f"{int(text)} segment(s)")
        else:
            ignored.append("segments")
    if price not in (None, ""):
        if PRICE.fullmatch(price) and price_unit and CURRENCY.fullmatch(price_unit):
            notification.price, notification.price_unit = price, price_unit
            kept.append(f"price {price} {price_unit}")
        else:
            ignored.append("price")
    words = f"notification {notification.id}: " + (", ".join(kept) or "no cost reported")
    return words + (f" ({' and '.join(ignored)} unreadable, left out)" if ignored else "")


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
    notification = sent_through(ctx, provider, provider_message_id)
    if notification is None:
        return unknown(provider, provider_message_id)
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


SOFT_BOUNCE = "soft bounce"


def soft_bounce(ctx, provider: str, provider_message_id: str, detail: str, at: dt.datetime | None = None, *,
                window: dt.timedelta, limit: int) -> str:
    """A temporary failure the provider reports (a full mailbox, an
    out-of-office reply). After the message was delivered it is an
    auto-reply and changes nothing. Otherwise the message keeps its state
    with the soft bounce noted in ``delivery_detail``, and when this makes
    ``limit`` soft-bounced messages to the address within ``window``, this
    one is ``failed`` (the address is not suppressed: a full mailbox
    empties). Returns what was done, in words."""
    at = at or utcnow()
    notification = sent_through(ctx, provider, provider_message_id)
    if notification is None:
        return unknown(provider, provider_message_id)
    if notification.delivery_state != SENT:
        return (f"notification {notification.id} is {notification.delivery_state}: a soft bounce "
                f"({detail}) changes nothing" + (" (an auto-reply)" if notification.delivery_state == DELIVERED
                                                 else ""))
    notification.delivery_detail = f"{SOFT_BOUNCE}: {detail}"[:500]
    notification.updated_at = at
    ctx.db.flush()
    bounced = ctx.db.scalar(
        select(func.count()).select_from(Notification).where(
            Notification.channel == notification.channel, Notification.recipient == notification.recipient,
            Notification.delivery_state == SENT, Notification.delivery_detail.startswith(f"{SOFT_BOUNCE}:"),
            Notification.updated_at > at - window))
    if bounced < limit:
        return f"notification {notification.id}: {SOFT_BOUNCE} {bounced} of {limit} to this address ({detail})"
    hours = round(window.total_seconds() / 3600)
    advance_delivery(ctx, provider, provider_message_id, FAILED,
                     f"{bounced} soft bounces to this address within {hours} h (last: {detail})", at)
    return f"notification {notification.id}: sent -> failed ({bounced} soft bounces within {hours} h)"
