"""What became of each guest's latest invitation, in the host's words: not
invited, queued, held (quiet hours, a provider's breaker), sent, delivered, opened, bounced, marked as spam,
unsubscribed, not sent (suppressed) or failed.

The facts live elsewhere — the notification that carried the invitation
(its delivery state, moved forward by the provider's reports), the guest's
first open, and the suppression list (a guest who unsubscribes after the
invitation arrived) — and are read together here, a page of guests or a
whole event at a time, in one query each."""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select

from guestguard import timefmt
from guestguard.events.models import Guest
from guestguard.notifications.delivery import BOUNCED, COMPLAINED, DELIVERED, FAILED, SENT, SUPPRESSED
from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.suppression import EVERYWHERE, REASONS, STOP, UNSUBSCRIBE
from guestguard.tasks import PENDING

NOT_INVITED, QUEUED, HELD, OPENED, UNSUBSCRIBED = "not_invited", "queued", "held", "opened", "unsubscribed"
# Every state a guest's invitation can be in, in the order a summary lists them.
STATES = (NOT_INVITED, QUEUED, HELD, SENT, DELIVERED, OPENED, BOUNCED, COMPLAINED, UNSUBSCRIBED, SUPPRESSED, FAILED)
# How the outbox notes a message it put back to wait (quiet hours, a
# provider's open breaker): "held until <ISO time>: <why>".
HELD_NOTE = "held until "
LABELS = {
    NOT_INVITED: "Not invited", QUEUED: "Queued", HELD: "Held", SENT: "Sent", DELIVERED: "Delivered", OPENED: "Opened",
    BOUNCED: "Bounced", COMPLAINED: "Marked as spam", UNSUBSCRIBED: "Unsubscribed", SUPPRESSED: "Not sent",
    FAILED: "Failed",
}
# States the host should act on (another address, another channel).
TROUBLE = frozenset({BOUNCED, COMPLAINED, UNSUBSCRIBED, SUPPRESSED, FAILED})
CHANNEL_WORDS = {"email": "by email", "sms": "by text message"}
# A stop the guest asked for, as a suppression's reason says it.
GUEST_STOPS = (UNSUBSCRIBE, STOP)


@dataclass(frozen=True)
class InvitationDelivery:
    state: str
    channel: str | None = None
    # Why, in words, for the states that need one.
    reason: str | None = None

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def trouble(self) -> bool:
        return self.state in TROUBLE


def state_of(*, invited: bool, opened: bool, status: str | None, delivery_state: str | None,
             detail: str | None, channel: str | None, stopped: bool, held: str | None = None) -> InvitationDelivery:
    """The invitation's state from its facts. A failure of the latest
    invitation outranks an open (of an earlier link); a stop the guest asked
    for outranks everything but a failure, since nothing more will reach
    them; an open outranks the provider's "delivered"."""
    if not invited:
        return InvitationDelivery(NOT_INVITED)
    if delivery_state in (BOUNCED, COMPLAINED, FAILED):
        return InvitationDelivery(delivery_state, channel, reason_for(delivery_state, detail))
    if delivery_state == SUPPRESSED:
        if detail in (REASONS[UNSUBSCRIBE], REASONS[STOP]):
            return InvitationDelivery(UNSUBSCRIBED, channel, detail)
        return InvitationDelivery(SUPPRESSED, channel, reason_for(SUPPRESSED, detail))
    if stopped:
        return InvitationDelivery(UNSUBSCRIBED, channel, REASONS[STOP if channel == "sms" else UNSUBSCRIBE])
    if opened:
        return InvitationDelivery(OPENED, channel)
    if delivery_state == DELIVERED:
        return InvitationDelivery(DELIVERED, channel)
    if status == PENDING and held is not None:
        return InvitationDelivery(HELD, channel, held)
    if status == PENDING:
        return InvitationDelivery(QUEUED, channel, "waiting to be sent")
    # Sent, or a message whose record privacy retention has erased since.
    return InvitationDelivery(SENT, channel)


def reason_for(state: str, detail: str | None) -> str:
    if state == BOUNCED:
        return "the address does not exist or refuses mail" + (f" ({detail})" if detail else "")
    if state == COMPLAINED:
        return "the guest reported it as spam; nothing more will be sent to this address"
    if state == SUPPRESSED:
        return detail or "the address is on the list of addresses not to write to"
    return "it could not be delivered" + (f": {plain(detail)}" if detail else "")


def plain(detail: str) -> str:
    """A provider's error without the outbox's own prefix."""
    for prefix in ("permanent: ", "transient: ", "undelivered: "):
        detail = detail.removeprefix(prefix)
    return detail[:200]


def stop_asked(workspace_id):
    """Whether the guest asked this workspace's messages (or all) to stop
    since: a correlated EXISTS over the suppression list."""
    return exists().where(
        Suppression.channel == Notification.channel, Suppression.address == Notification.recipient,
        Suppression.reason.in_(GUEST_STOPS),
        or_(Suppression.scope == str(workspace_id), Suppression.scope == EVERYWHERE))


def held_words(note: str | None, timezone: str) -> str | None:
    """Why and until when a held message waits ("quiet hours at the
    recipient's; it goes out at 08:00 BST"), from the outbox's note; None
    for a message not held."""
    if not note or not note.startswith(HELD_NOTE):
        return None
    until, _, why = note.removeprefix(HELD_NOTE).partition(": ")
    try:
        moment = dt.datetime.fromisoformat(until)
    except ValueError:
        return why or "waiting"
    return f"{why}; it goes out at {timefmt.when(moment, timezone)}"


def _facts(workspace_id):
    held = and_(Notification.status == PENDING, Notification.last_error.startswith(HELD_NOTE))
    return (Notification.status, Notification.delivery_state, Notification.delivery_detail, Notification.channel,
            stop_asked(workspace_id).label("stopped"), held.label("held"))


def invitation_deliveries(db, workspace_id: uuid.UUID, guests: Iterable[Guest],
                          timezone: str = "UTC") -> dict[uuid.UUID, InvitationDelivery]:
    """Each guest's invitation state, by guest id: one query for the page;
    times in ``timezone`` (the event's)."""
    guests = list(guests)
    wanted = [guest.invitation_id for guest in guests if guest.invitation_id is not None]
    facts = {}
    if wanted:
        facts = {row.id: row for row in db.execute(
            select(Notification.id, Notification.last_error, *_facts(workspace_id))
            .where(Notification.id.in_(wanted)))}
    found = {}
    for guest in guests:
        row = facts.get(guest.invitation_id)
        found[guest.id] = state_of(
            invited=guest.invited_at is not None or guest.invitation_id is not None,
            opened=guest.opened_at is not None, status=row.status if row else None,
            delivery_state=row.delivery_state if row else None, detail=row.delivery_detail if row else None,
            channel=row.channel if row else None, stopped=bool(row.stopped) if row else False,
            held=held_words(row.last_error, timezone) if row and row.held else None)
    return found


def delivery_summary(db, workspace_id: uuid.UUID, event_id: uuid.UUID) -> dict[str, int]:
    """How many of the event's guests are in each state (only states some
    guest is in), in one grouped query whatever the list's size."""
    invited = or_(Guest.invited_at.is_not(None), Guest.invitation_id.is_not(None)).label("invited")
    opened = Guest.opened_at.is_not(None).label("opened")
    facts = _facts(workspace_id)
    rows = db.execute(
        select(invited, opened, *facts, func.count(Guest.id))
        .select_from(Guest).outerjoin(Notification, and_(Notification.id == Guest.invitation_id))
        .where(Guest.event_id == event_id)
        .group_by(invited, opened, *facts[:4], facts[4], facts[5]))
    counts: Counter[str] = Counter()
    for row in rows:
        state = state_of(invited=bool(row.invited), opened=bool(row.opened), status=row.status,
                         delivery_state=row.delivery_state, detail=row.delivery_detail, channel=row.channel,
                         stopped=bool(row.stopped), held="" if row.held else None)
        counts[state.state] += row[-1]
    return {state: counts[state] for state in STATES if counts[state]}
