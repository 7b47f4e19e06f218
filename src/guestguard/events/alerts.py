"""Answer alerts (a default plugin for its listener): hosts who ask hear of
an event's answers by email, each as it comes or in a daily digest sent at
08:00 in the event's time zone. Alerts go only to people still in the
event's workspace; an API key has no address and sets none."""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update

from guestguard.accounts.models import User
from guestguard.context import context_of
from guestguard.db import lock_name, utcnow
from guestguard.events.invitations import answer_words
from guestguard.events.models import ALERT_MODES, DAILY, EACH, AnswerAlert, Event, Guest, Rsvp
from guestguard.notifications.services import queue_notification
from guestguard.plugins import hookimpl
from guestguard.timefmt import zone
from guestguard.workspaces.models import Membership

OFF = "off"
MODES = (*ALERT_MODES, OFF)
ALERT, DIGEST = "answer_alert", "answer_digest"
ANSWER_EVENTS = ("rsvp.received", "rsvp.changed", "rsvp.promoted")
DIGEST_HOUR = 8
DIGEST_LINES = 50


def alert_mode(db, event_id: uuid.UUID, user_id: uuid.UUID | None) -> str:
    if user_id is None:
        return OFF
    return db.scalar(select(AnswerAlert.mode).where(AnswerAlert.event_id == event_id,
                                                    AnswerAlert.user_id == user_id)) or OFF


def set_alert(ctx, event: Event, mode: str) -> str:
    """The acting person's alerts for ``event`` become ``mode``; setting the
    same mode again changes nothing. A digest newly asked for covers answers
    from now on."""
    user_id = ctx.actor_id
    lock_name(ctx.db, f"answer-alerts:{event.id}:{user_id}", AnswerAlert)
    found = ctx.db.scalar(select(AnswerAlert).where(AnswerAlert.event_id == event.id,
                                                    AnswerAlert.user_id == user_id))
    if mode == OFF:
        if found is not None:
            ctx.db.delete(found)
    elif found is None:
        ctx.db.add(AnswerAlert(workspace_id=event.workspace_id, event_id=event.id, user_id=user_id, mode=mode))
    elif found.mode != mode:
        found.mode, found.digest_through = mode, utcnow()
    ctx.db.flush()
    return mode


def subscribers(db, event_id: uuid.UUID, mode: str) -> list[tuple[AnswerAlert, User]]:
    """Alerts of ``mode`` for the event whose holders are still members of its workspace."""
    return list(db.execute(
        select(AnswerAlert, User).join(User, User.id == AnswerAlert.user_id)
        .join(Membership, (Membership.user_id == AnswerAlert.user_id)
              & (Membership.workspace_id == AnswerAlert.workspace_id))
        .where(AnswerAlert.event_id == event_id, AnswerAlert.mode == mode)).all())


def answer_sentence(name: str, response: str, plus_ones: int, previous: str | None, waitlisted: bool) -> str:
    words = answer_words(response, plus_ones) + (" (on the waitlist: the event is full)" if waitlisted else "")
    if previous:
        return f"{name} changed their answer from {previous} to {words}"
    return f"{name} answered {words}"


@hookimpl
def domain_event(event, request):
    """Each answer, to the hosts who asked for each one: one email per host,
    written in the same transaction as this listener's delivery record, so
    once."""
    if event.name not in ANSWER_EVENTS:
        return
    data = event.data
    found = request.db.execute(select(Guest, Event).join(Event, Event.id == Guest.event_id)
                               .where(Guest.id == uuid.UUID(data["guest_id"]))).first()
    if found is None:  # removed meanwhile
        return
    guest, party = found
    alerts = subscribers(request.db, party.id, EACH)
    if not alerts:
        return
    ctx = context_of(request)
    if event.name == "rsvp.promoted":
        sentence = f"{guest.name} got a place from the waitlist"
    else:
        sentence = answer_sentence(guest.name, data["response"], int(data.get("plus_ones") or 0),
                                   data.get("previous"), bool(data.get("waitlisted")))
    context = {"event_name": party.name, "sentence": sentence,
               "guest_url": ctx.url("event_guest", event_id=party.id, guest_id=guest.id),
               "event_url": ctx.url("event_page", event_id=party.id)}
    for _, user in alerts:
        queue_notification(ctx, channel="email", recipient=user.email, template=ALERT, context=context,
                           workspace_id=party.workspace_id, about={"event_id": str(party.id)})


def digest_due(now: dt.datetime, timezone: str, through: dt.datetime) -> bool:
    """Whether the day's digest (08:00 in the event's zone) is due and not
    yet covered."""
    local = now.astimezone(zone(timezone))
    today = local.replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
    return local >= today and through < today


def send_digests(request) -> int:
    """Periodic task (hourly): the daily digest of each alert that is due,
    with the answers recorded since the last one; nothing when none came.
    Each alert is claimed by moving its ``digest_through`` in the transaction
    that queues its email, so two workers never send one twice."""
    now, sent = utcnow(), 0
    with request.tm:
        events = request.db.execute(select(Event.id, Event.timezone).join(
            AnswerAlert, AnswerAlert.event_id == Event.id).where(AnswerAlert.mode == DAILY,
                                                                 Event.deleted_at.is_(None)).distinct()).all()
    for event_id, timezone in events:
        with request.tm:
            sent += digest_event(context_of(request), event_id, timezone, now)
    return sent


def digest_event(ctx, event_id: uuid.UUID, timezone: str, now: dt.datetime) -> int:
    sent = 0
    party = ctx.db.get(Event, event_id)
    for alert, user in subscribers(ctx.db, event_id, DAILY):
        since = alert.digest_through  # read before the claim moves it
        if not digest_due(now, timezone, since):
            continue
        claimed = ctx.db.execute(update(AnswerAlert).where(
            AnswerAlert.id == alert.id, AnswerAlert.digest_through == since)
            .values(digest_through=now)).rowcount
        if not claimed:  # another worker took it
            continue
        answers = ctx.db.execute(
            select(Rsvp.response, Rsvp.plus_ones, Guest.name).join(Guest, Guest.id == Rsvp.guest_id)
            .where(Rsvp.event_id == event_id, Rsvp.created_at > since, Rsvp.created_at <= now)
            .order_by(Rsvp.created_at, Rsvp.id)).all()
        if not answers:
            continue
        lines = [f"{name}: {answer_words(response, plus_ones)}" for response, plus_ones, name in answers]
        queue_notification(ctx, channel="email", recipient=user.email, template=DIGEST, workspace_id=party.workspace_id,
                           about={"event_id": str(event_id)},
                           context={"event_name": party.name, "count": str(len(lines)),
                                    "lines": lines[:DIGEST_LINES], "more": str(max(0, len(lines) - DIGEST_LINES)),
                                    "event_url": ctx.url("event_page", event_id=event_id)})
        sent += 1
    return sent

