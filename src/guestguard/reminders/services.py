"""Reminders before an event, on durable scheduled messages.

An event carries its reminders as offsets before its start: ``"7d"`` (7
days: the same wall-clock time 7 days earlier in the event's zone, across a
daylight-saving change) or ``"3h"`` (3 hours); by default ``7d`` and ``1d``,
at most 5. Guests who answered yes (with a place) or maybe get them.

The machinery, run every minute by the worker (``dispatch``):

1. *Plan*: for every reminder that has come due (and is not older than
   LATE_WINDOW), one ``scheduled_messages`` row per guest who had answered
   yes or maybe by then and had been added by then, unique per guest and
   reminder, inserted with ON CONFLICT DO NOTHING: planning twice, or by
   two workers at once, plans once. Guests added or answering after a
   reminder was due are not reminded for it.
2. *Claim and send*: due rows, a batch per transaction, taken with
   ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two workers take different
   rows) and under SQLite's write lock there. Each is checked again (the
   event still on, the guest's answer still yes or maybe, the reminder
   still wanted, its time unchanged) and queued in the outbox, whose
   suppression and quiet hours apply, in the transaction that marks it
   ``sent``: a worker dying mid-batch leaves the whole batch as it was, and
   the next run sends each row once. A row whose event moved later waits
   for its new time; one found more than LATE_WINDOW late is ``missed``.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from guestguard.audit.services import record
from guestguard.checkin.passes import display_code
from guestguard.checkin.services import pass_of_guest
from guestguard.context import context_of
from guestguard.db import insert_ignoring_conflict, is_sqlite, sqlite_write_lock, utcnow
from guestguard.events.invitations import address_for, choose_channel, guest_message_context
from guestguard.events.models import CANCELLED, MAYBE, PUBLISHED, YES, Event, Guest
from guestguard.events.services import EventsError
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import GUEST_MESSAGE
from guestguard.reminders.models import MISSED, SCHEDULED, SENT, SKIPPED, STATES, ScheduledMessage
from guestguard.sms_segments import MessageTooLong
from guestguard.timefmt import zone

log = logging.getLogger(__name__)

TEMPLATE = "reminder"
DEFAULT_REMINDERS = ("7d", "1d")
MAX_REMINDERS = 5
OFFSET = re.compile(r"^([1-9][0-9]{0,2})([dh])$")
MAX_DAYS, MAX_HOURS = 60, 60 * 24
# A reminder found later than this after its time is not sent (a worker
# down for a day must not send "tomorrow!" on the day after).
LATE_WINDOW = dt.timedelta(hours=6)
BATCH = 200
# Change notices (notices.py) share the table, under rules of their own.
NOTICE_PREFIX = "notice-"
ANSWERS = (YES, MAYBE)


# --- offsets -----------------------------------------------------------------------


def offset_problem(text: str) -> str | None:
    """What is wrong with one offset, in words, or None."""
    if text.startswith("-"):
        return "must be before the event starts: a number of days (7d) or hours (3h) before it"
    found = OFFSET.match(text)
    if found is None:
        return "must be a number of days or hours before the start, like 7d or 3h"
    number, unit = int(found.group(1)), found.group(2)
    if unit == "d" and number > MAX_DAYS:
        return f"must be at most {MAX_DAYS} days before the start"
    if unit == "h" and number > MAX_HOURS:
        return f"must be at most {MAX_HOURS} hours before the start"
    return None


def check_reminders(values: list[str]) -> list[str]:
    """The offsets as stored (trimmed, lower case, duplicates dropped, the
    earliest first); ValueError naming the problem."""
    cleaned: list[str] = []
    for value in values:
        text = value.strip().lower().replace(" ", "")
        problem = offset_problem(text)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
        if text not in cleaned:
            cleaned.append(text)
    if len(cleaned) > MAX_REMINDERS:
        raise ValueError(f"at most {MAX_REMINDERS} reminders")
    return sorted(cleaned, key=lambda text: -offset_delta(text).total_seconds())


def offset_delta(text: str) -> dt.timedelta:
    number, unit = int(text[:-1]), text[-1]
    return dt.timedelta(days=number) if unit == "d" else dt.timedelta(hours=number)


def due_at(starts_at: dt.datetime, timezone: str, rule: str) -> dt.datetime:
    """When the reminder ``rule`` goes out: days are calendar days in the
    event's zone (7 days before 19:00 is 19:00, whatever the clocks did
    meanwhile); hours are hours."""
    if rule.endswith("h"):
        return starts_at - offset_delta(rule)
    place = zone(timezone)
    wall = starts_at.astimezone(place).replace(tzinfo=None) - offset_delta(rule)
    return wall.replace(tzinfo=place).astimezone(dt.UTC)


def offset_words(rule: str) -> str:
    number, unit = int(rule[:-1]), rule[-1]
    word = {"d": "day", "h": "hour"}[unit]
    return f"{number} {word}{'' if number == 1 else 's'} before"


# --- planning ----------------------------------------------------------------------


def plan(ctx, now: dt.datetime) -> int:
    """Rows for every reminder come due in the last LATE_WINDOW; how many
    were new."""
    db = ctx.db
    horizon = now + dt.timedelta(days=MAX_DAYS + 1)
    events = db.scalars(select(Event).where(Event.status == PUBLISHED, Event.deleted_at.is_(None),
                                            Event.starts_at > now, Event.starts_at <= horizon))
    planned = 0
    for event in events:
        for rule in event.reminders or []:
            due = due_at(event.starts_at, event.timezone, rule)
            if due > now or now - due > LATE_WINDOW:
                continue
            guests = db.scalars(select(Guest.id).where(
                Guest.event_id == event.id, Guest.response.in_(ANSWERS), Guest.waitlisted_at.is_(None),
                Guest.created_at <= due, Guest.responded_at <= due)).all()
            for guest_id in guests:
                planned += insert_ignoring_conflict(db, ScheduledMessage.__table__, {
                    "id": uuid.uuid4(), "workspace_id": event.workspace_id, "event_id": event.id,
                    "guest_id": guest_id, "rule": rule, "due_at": due, "state": SCHEDULED, "attempts": 0,
                    "created_at": now, "done_at": None, "notification_id": None, "reason": None},
                    index_elements=["guest_id", "rule"])
    return planned


# --- sending -----------------------------------------------------------------------


@dataclass
class Dispatched:
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    missed: int = 0
    rescheduled: int = 0


def claim(db, now: dt.datetime, limit: int) -> list[ScheduledMessage]:
    """Due rows no other worker holds, locked until this transaction ends."""
    if is_sqlite(db):
        sqlite_write_lock(db, ScheduledMessage)  # one writer: the claim is whole
    return list(db.scalars(select(ScheduledMessage)
                           .where(ScheduledMessage.state == SCHEDULED, ScheduledMessage.due_at <= now)
                           .order_by(ScheduledMessage.due_at, ScheduledMessage.id).limit(limit)
                           .with_for_update(skip_locked=True)))


def dispatch(request, now: dt.datetime | None = None, batch: int = BATCH) -> Dispatched:
    """Periodic task: plan, then send every due reminder, a batch per
    transaction."""
    ctx = context_of(request)
    now = now or utcnow()
    done = Dispatched()
    with ctx.tm:
        done.planned = plan(ctx, now)
    while True:
        with ctx.tm:
            rows = claim(ctx.db, now, batch)
            # The batch's guests in one query: each row's look-up finds them loaded.
            ctx.db.scalars(select(Guest).where(Guest.id.in_([row.guest_id for row in rows]))).all()
            for row in rows:
                outcome = send_one(ctx, row, now)
                setattr(done, outcome, getattr(done, outcome) + 1)
        if len(rows) < batch:
            break
    if done.sent or done.missed:
        log.info("reminders: %d sent, %d skipped, %d missed", done.sent, done.skipped, done.missed)
    return done


def _finish(row: ScheduledMessage, state: str, now: dt.datetime, reason: str | None = None) -> str:
    row.state, row.done_at, row.reason = state, now, reason
    row.attempts += 1
    return state


def send_one(ctx, row: ScheduledMessage, now: dt.datetime) -> str:
    """Check the row again and send it, or say why not: "sent", "skipped",
    "missed" or "rescheduled"."""
    db = ctx.db
    event = db.get(Event, row.event_id)
    guest = db.get(Guest, row.guest_id)
    if event is None or guest is None or event.deleted_at is not None:
        return _finish(row, SKIPPED, now, "the event or the guest was deleted")
    if event.status == CANCELLED:
        return _finish(row, SKIPPED, now, "the event was cancelled")
    if event.status != PUBLISHED:
        return _finish(row, SKIPPED, now, "the event is no longer published")
    if row.rule not in (event.reminders or []):
        return _finish(row, SKIPPED, now, "the host no longer sends this reminder")
    if guest.response not in ANSWERS or guest.waitlisted_at is not None:
        return _finish(row, SKIPPED, now, "the guest's answer is no longer yes or maybe")
    due = due_at(event.starts_at, event.timezone, row.rule)
    if due > now:
        row.due_at = due  # the event moved later: the reminder waits for its new time
        return "rescheduled"
    if now - due > LATE_WINDOW or event.starts_at <= now:
        return _finish(row, MISSED, now, f"found {int((now - due).total_seconds() // 60)} minutes late")
    try:
        channel = choose_channel(ctx, guest, None, event)
        context, sealed = reminder_context(ctx, event, guest)
        notification = queue_notification(
            ctx, channel=channel, recipient=address_for(ctx, guest, channel), template=TEMPLATE,
            workspace_id=event.workspace_id, context=context, sealed=sealed, kind=GUEST_MESSAGE,
            about={"event_id": str(event.id), "guest_id": str(guest.id)})
    except EventsError as unreachable:
        return _finish(row, SKIPPED, now, unreachable.message[:500])
    except MessageTooLong as too_long:
        return _finish(row, SKIPPED, now, f"the text would be too long: {too_long}")
    row.notification_id = notification.id
    ctx.emit("reminder.sent", {"event_id": str(event.id), "guest_id": str(guest.id), "rule": row.rule,
                               "channel": channel, "notification_id": str(notification.id)}, event.workspace_id)
    return _finish(row, SENT, now)


def reminder_context(ctx, event: Event, guest) -> tuple[dict, dict]:
    """The reminder's context, and its sealed part: the pass's short code
    (the QR's secret comes from the invitation token, which is not kept)."""
    context = {**guest_message_context(ctx, event, guest), "response": guest.response or YES, "pass_code": ""}
    found = pass_of_guest(ctx.db, guest.id) if guest.response == YES else None
    return context, ({"pass_code": display_code(found.code)} if found else {})


# --- the host's view ---------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    rule: str
    words: str
    due_at: dt.datetime
    counts: dict[str, int]


def schedule(db, event: Event) -> list[Occurrence]:
    """Each reminder of the event with its time and its rows per state (one query)."""
    rows = db.execute(select(ScheduledMessage.rule, ScheduledMessage.state, func.count())
                      .where(ScheduledMessage.event_id == event.id,
                             ScheduledMessage.rule.not_like(f"{NOTICE_PREFIX}%"))
                      .group_by(ScheduledMessage.rule, ScheduledMessage.state)).all()
    counts: dict[str, dict[str, int]] = {}
    for rule, state, count in rows:
        counts.setdefault(rule, dict.fromkeys(STATES, 0))[state] = count
    rules = list(event.reminders or [])
    rules += [rule for rule in counts if rule not in rules]  # removed, but some went
    return [Occurrence(rule, offset_words(rule), due_at(event.starts_at, event.timezone, rule),
                       counts.get(rule, dict.fromkeys(STATES, 0))) for rule in rules]


def preview(ctx, event: Event, guest=None):
    """The reminder as a guest would get it by email (a guest who said yes,
    else a sample guest)."""
    guest = guest or ctx.db.scalar(select(Guest).where(Guest.event_id == event.id, Guest.response == YES)
                                   .order_by(Guest.name).limit(1))
    if guest is None:
        guest = Guest(workspace_id=event.workspace_id, event_id=event.id, name="Sample Guest", response=YES,
                      plus_ones_allowed=0, plus_ones_coming=0)
    context, sealed = reminder_context(ctx, event, guest)
    # Placeholders, not the guest's own door code and unsubscribe link.
    shown = {**context, "pass_code": "ABCD-EFGH" if sealed else "",
             "unsubscribe_url": "(the guest's own unsubscribe link)"}
    return ctx.registry["notifications.renderer"].render("email", TEMPLATE, shown), guest.name


def send_test(ctx, event: Event, user) -> None:
    """The reminder to the host's own address, as a guest who said yes gets it."""
    guest = Guest(workspace_id=event.workspace_id, event_id=event.id, name=user.display_name or "Test guest",
                  response=YES, plus_ones_allowed=0, plus_ones_coming=0)
    context = {**guest_message_context(ctx, event, guest), "response": YES, "pass_code": "TEST-CODE"}
    queue_notification(ctx, channel="email", recipient=user.email, template=TEMPLATE,
                       workspace_id=event.workspace_id, context=context,
                       about={"event_id": str(event.id)})
    record(ctx, "reminder.test_sent", actor_id=user.id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id)
