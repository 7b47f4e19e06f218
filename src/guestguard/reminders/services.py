"""Reminders before an event, and the "please answer" nudge before its RSVP
deadline, on durable scheduled messages.

An event carries its reminders as offsets before its start: ``"7d"`` (7
days: the same wall-clock time 7 days earlier in the event's zone, across a
daylight-saving change) or ``"3h"`` (3 hours); by default ``7d`` and ``1d``,
at most ``reminders.max_per_event``. Guests who answered yes (with a place)
or maybe get them. An event may also carry ``answer_nudge``, one offset
before its RSVP deadline: guests invited by then who have not answered get
one "please answer" message (rule ``nudge``, once per guest however often
the host changes it).

The machinery, run every minute by the worker (``dispatch``):

1. *Plan*: for every reminder or nudge that has come due (and is not older
   than ``reminders.late_window_minutes``), one ``scheduled_messages`` row
   per guest it concerns by then, unique per guest and rule, inserted with
   ON CONFLICT DO NOTHING: planning twice, or by two workers at once, plans
   once. Guests added (or invited, or answering) after its time are not
   reminded for it.
2. *Claim and send*: due rows, ``reminders.batch_size`` per transaction,
   taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two workers take
   different rows) and under SQLite's write lock there. Each is checked
   again (the event still on, the guest's answer still what the rule wants,
   the rule still wanted, its time unchanged, the address not unsubscribed
   or suppressed) and queued in the outbox, whose quiet hours apply, in the
   transaction that marks it ``sent``: a worker dying mid-batch leaves the
   whole batch as it was, and the next run sends each row once. A row whose
   time moved later waits for its new time; one found too late is
   ``missed``. A batch reads what it needs in a few statements and writes
   its messages, domain events and rows' states in one statement each.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, insert, or_, select, update

from guestguard.audit.services import record
from guestguard.billing.services import PlanLimitReached
from guestguard.checkin import passes
from guestguard.checkin.models import GuestPass, PassSecret
from guestguard.context import context_of
from guestguard.db import insert_many_ignoring_conflict, is_sqlite, sqlite_write_lock, utcnow
from guestguard.domain import emit_many
from guestguard.events.invitations import (
    EMAIL,
    address_for,
    choose_channel,
    guest_message_common,
    guest_message_context,
)
from guestguard.events.models import CANCELLED, MAYBE, PUBLISHED, YES, Event, Guest, InvitationLink
from guestguard.events.services import EventsError
from guestguard.notifications.services import Outgoing, queue_notification, queue_notifications
from guestguard.notifications.suppression import GUEST_MESSAGE, stopping_many
from guestguard.reminders.models import MISSED, SCHEDULED, SENT, SKIPPED, STATES, ScheduledMessage
from guestguard.sms_segments import MessageTooLong
from guestguard.timefmt import zone

log = logging.getLogger(__name__)

TEMPLATE = "reminder"
NUDGE_TEMPLATE = "answer_nudge"
NUDGE = "nudge"  # the rule of an event's "please answer" nudge
DEFAULT_REMINDERS = ("7d", "1d")
OFFSET = re.compile(r"^([1-9][0-9]{0,3})([dh])$")
# The furthest any setting lets an offset go (reminders.max_days_before, in
# days; in hours, 24 times it): the form of an offset is checked against it,
# the operator's limit by the events service.
CEILING_DAYS = 365
# Change notices (notices.py) share the table, under rules of their own.
NOTICE_PREFIX = "notice-"
ANSWERS = (YES, MAYBE)
TABLE = ScheduledMessage.__table__


# --- offsets -----------------------------------------------------------------------


def offset_problem(text: str, max_days: int = CEILING_DAYS, before: str = "the event starts") -> str | None:
    """What is wrong with one offset, in words, or None."""
    if text.startswith("-"):
        return f"must be before {before}: a number of days (7d) or hours (3h) before it"
    found = OFFSET.match(text)
    if found is None:
        return f"must be a number of days or hours before {before}, like 7d or 3h"
    number, unit = int(found.group(1)), found.group(2)
    if unit == "d" and number > max_days:
        return f"must be at most {max_days} days before {before}"
    if unit == "h" and number > max_days * 24:
        return f"must be at most {max_days * 24} hours before {before}"
    return None


def cleaned_offset(value: str) -> str:
    return value.strip().lower().replace(" ", "")


def check_reminders(values: list[str]) -> list[str]:
    """The offsets as stored (trimmed, lower case, duplicates dropped, the
    earliest first); ValueError naming the problem. The operator's limits
    are the events service's to check (``limits_problems``)."""
    cleaned: list[str] = []
    for value in values:
        text = cleaned_offset(value)
        problem = offset_problem(text)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
        if text not in cleaned:
            cleaned.append(text)
    return sorted(cleaned, key=lambda text: -offset_delta(text).total_seconds())


def check_nudge(value: str | None) -> str | None:
    """The nudge's offset as stored; empty means none."""
    text = cleaned_offset(value or "")
    if not text:
        return None
    problem = offset_problem(text, before="the RSVP deadline")
    if problem is not None:
        raise ValueError(problem)
    return text


def limits_problems(settings, reminders: list[str] | None, nudge: str | None) -> dict[str, str]:
    """The fields over the operator's limits (``reminders.max_per_event``,
    ``reminders.max_days_before``), with what is wrong."""
    max_days = settings["reminders.max_days_before"]
    fields = {}
    if reminders is not None:
        if len(reminders) > settings["reminders.max_per_event"]:
            fields["reminders"] = f"at most {settings['reminders.max_per_event']} reminders"
        for rule in reminders:
            problem = offset_problem(rule, max_days)
            if problem is not None:
                fields["reminders"] = f"{rule!r} {problem}"
    if nudge:
        problem = offset_problem(nudge, max_days, before="the RSVP deadline")
        if problem is not None:
            fields["answer_nudge"] = problem
    return fields


def offset_delta(text: str) -> dt.timedelta:
    number, unit = int(text[:-1]), text[-1]
    return dt.timedelta(days=number) if unit == "d" else dt.timedelta(hours=number)


def due_at(starts_at: dt.datetime, timezone: str, rule: str) -> dt.datetime:
    """When the offset ``rule`` before ``starts_at`` comes: days are
    calendar days in the event's zone (7 days before 19:00 is 19:00,
    whatever the clocks did meanwhile); hours are hours."""
    if rule.endswith("h"):
        return starts_at - offset_delta(rule)
    place = zone(timezone)
    wall = starts_at.astimezone(place).replace(tzinfo=None) - offset_delta(rule)
    return wall.replace(tzinfo=place).astimezone(dt.UTC)


def offset_words(rule: str) -> str:
    number, unit = int(rule[:-1]), rule[-1]
    word = {"d": "day", "h": "hour"}[unit]
    return f"{number} {word}{'' if number == 1 else 's'} before"


def nudge_due(event: Event) -> dt.datetime | None:
    """When the event's nudge goes; None when it has none (or no deadline)."""
    if not event.answer_nudge or event.rsvp_deadline is None:
        return None
    return due_at(event.rsvp_deadline, event.timezone, event.answer_nudge)


def rule_due(event: Event, rule: str) -> dt.datetime | None:
    """When ``rule`` of the event goes now; None when the host no longer
    sends it."""
    if rule == NUDGE:
        return nudge_due(event)
    return due_at(event.starts_at, event.timezone, rule) if rule in (event.reminders or []) else None


def late_window(settings) -> dt.timedelta:
    # A message found later than this after its time is not sent (a worker
    # down for a day must not send "tomorrow!" on the day after).
    return dt.timedelta(minutes=settings["reminders.late_window_minutes"])


# --- planning ----------------------------------------------------------------------


def _who(event: Event, rule: str, due: dt.datetime):
    """The guests ``rule`` concerns, as they were at its time."""
    if rule == NUDGE:
        return select(Guest.id).where(Guest.event_id == event.id, Guest.response.is_(None),
                                      Guest.invited_at.is_not(None), Guest.invited_at <= due,
                                      Guest.created_at <= due)
    return select(Guest.id).where(Guest.event_id == event.id, Guest.response.in_(ANSWERS),
                                  Guest.waitlisted_at.is_(None), Guest.created_at <= due, Guest.responded_at <= due)


def plan(ctx, now: dt.datetime) -> int:
    """Rows for every reminder and nudge come due within the late window;
    how many were new."""
    db = ctx.db
    late = late_window(ctx.settings)
    horizon = now + dt.timedelta(days=ctx.settings["reminders.max_days_before"] + 1)
    # Reminders come at most max_days_before the start, a nudge at most that
    # before the deadline (which may be long before the start).
    soon = or_(Event.starts_at <= horizon, and_(Event.answer_nudge.is_not(None), Event.rsvp_deadline > now,
                                                  Event.rsvp_deadline <= horizon))
    events = db.scalars(select(Event).where(Event.status == PUBLISHED, Event.deleted_at.is_(None),
                                            Event.starts_at > now, soon)).all()
    planned = 0
    for event in events:
        rules = [(rule, rule_due(event, rule)) for rule in event.reminders or []]
        if nudge_due(event) is not None and event.rsvp_deadline > now:
            rules.append((NUDGE, nudge_due(event)))
        for rule, due in rules:
            if due > now or now - due > late:
                continue
            rows = [{"id": uuid.uuid4(), "workspace_id": event.workspace_id, "event_id": event.id,
                     "guest_id": guest_id, "rule": rule, "due_at": due, "state": SCHEDULED, "attempts": 0,
                     "created_at": now, "done_at": None, "notification_id": None, "reason": None}
                    for guest_id in db.scalars(_who(event, rule, due)).all()]
            planned += insert_many_ignoring_conflict(db, TABLE, rows, index_elements=["guest_id", "rule"])
    return planned


# --- sending -----------------------------------------------------------------------


@dataclass
class Dispatched:
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    missed: int = 0
    rescheduled: int = 0


def claim(db, now: dt.datetime, limit: int) -> list:
    """Due rows no other worker holds, locked until this transaction ends."""
    if is_sqlite(db):
        sqlite_write_lock(db, ScheduledMessage)  # one writer: the claim is whole
    return list(db.execute(select(TABLE.c.id, TABLE.c.event_id, TABLE.c.guest_id, TABLE.c.rule, TABLE.c.due_at)
                           .where(TABLE.c.state == SCHEDULED, TABLE.c.due_at <= now)
                           .order_by(TABLE.c.due_at, TABLE.c.id).limit(limit)
                           .with_for_update(skip_locked=True)).all())


def dispatch(request, now: dt.datetime | None = None, batch: int | None = None) -> Dispatched:
    """Periodic task: plan, then send every due reminder and nudge, a batch
    per transaction."""
    ctx = context_of(request)
    now = now or utcnow()
    batch = batch or ctx.settings["reminders.batch_size"]
    done = Dispatched()
    with ctx.tm:
        done.planned = plan(ctx, now)
    while True:
        with ctx.tm:
            rows = claim(ctx.db, now, batch)
            for outcome, count in send_batch(ctx, rows, now).items():
                setattr(done, outcome, getattr(done, outcome) + count)
        if len(rows) < batch:
            break
    if done.sent or done.missed:
        log.info("reminders: %d sent, %d skipped, %d missed", done.sent, done.skipped, done.missed)
    return done


def verdict(row, event: Event | None, guest: Guest | None, now: dt.datetime,
            late: dt.timedelta) -> tuple[str, str | dt.datetime] | None:
    """Why the row is not sent now: (state, reason) or ("rescheduled", its
    new time); None when it goes."""
    if event is None or guest is None or event.deleted_at is not None:
        return SKIPPED, "the event or the guest was deleted"
    if event.status == CANCELLED:
        return SKIPPED, "the event was cancelled"
    if event.status != PUBLISHED:
        return SKIPPED, "the event is no longer published"
    due = rule_due(event, row.rule)
    if due is None:
        return SKIPPED, f"the host no longer sends this {'nudge' if row.rule == NUDGE else 'reminder'}"
    if row.rule == NUDGE:
        if guest.response is not None:
            return SKIPPED, "the guest has answered"
    elif guest.response not in ANSWERS or guest.waitlisted_at is not None:
        return SKIPPED, "the guest's answer is no longer yes or maybe"
    if due > now:
        return "rescheduled", due  # the event (or its deadline) moved later: the row waits for its new time
    ends = event.rsvp_deadline if row.rule == NUDGE else event.starts_at
    if now - due > late or ends <= now:
        return MISSED, f"found {int((now - due).total_seconds() // 60)} minutes late"
    return None


@dataclass
class Going:
    row: object
    event: Event
    guest: Guest
    channel: str
    recipient: str


def send_batch(ctx, rows: list, now: dt.datetime) -> dict[str, int]:
    """Check the claimed rows again and queue the messages of those that
    still go; record each row's outcome. Counts per outcome."""
    db = ctx.db
    events = {event.id: event for event in db.scalars(select(Event).where(
        Event.id.in_({row.event_id for row in rows})))} if rows else {}
    guests = {guest.id: guest for guest in db.scalars(select(Guest).where(
        Guest.id.in_([row.guest_id for row in rows])))} if rows else {}
    late = late_window(ctx.settings)
    finished: list[dict] = []  # the rows' new states
    moved: list[dict] = []
    going: list[Going] = []

    def finish(row, state: str, reason: str | None = None, notification_id=None) -> None:
        finished.append({"b_id": row.id, "b_state": state, "b_reason": reason, "b_notification": notification_id})

    for row in rows:
        event, guest = events.get(row.event_id), guests.get(row.guest_id)
        found = verdict(row, event, guest, now, late)
        if found is not None and found[0] == "rescheduled":
            moved.append({"b_id": row.id, "b_due": found[1]})
        elif found is not None:
            finish(row, found[0], found[1][:500])
        else:
            try:
                channel = choose_channel(ctx, guest, None, event)
            except EventsError as unreachable:
                finish(row, SKIPPED, unreachable.message[:500])
                continue
            going.append(Going(row, event, guest, channel, address_for(ctx, guest, channel)))
    stopped = stopping_many(db, [(item.row.id, item.channel, item.recipient, GUEST_MESSAGE, item.event.workspace_id)
                                 for item in going])
    for item in going:
        if item.row.id in stopped:
            finish(item.row, SKIPPED, f"the address is on the suppression list: {stopped[item.row.id].text}"[:500])
    going = [item for item in going if item.row.id not in stopped]
    sent = _queue(ctx, going, finish)
    if moved:
        db.execute(update(TABLE).where(TABLE.c.id == bindparam("b_id")).values(due_at=bindparam("b_due")),
                   moved)
    if finished:
        db.execute(update(TABLE).where(TABLE.c.id == bindparam("b_id")).values(
            state=bindparam("b_state"), reason=bindparam("b_reason"), notification_id=bindparam("b_notification"),
            done_at=now, attempts=TABLE.c.attempts + 1), finished)
    counts = {"sent": len(sent), "rescheduled": len(moved), SKIPPED: 0, MISSED: 0}
    for change in finished:
        if change["b_state"] != SENT:
            counts[change["b_state"]] += 1
    emit_many(ctx, [("reminder.sent", data, workspace_id) for data, workspace_id in sent])
    return counts


def _queue(ctx, going: list[Going], finish) -> list[tuple[dict, uuid.UUID]]:
    """Queue the messages of the rows that go: email in one statement, each
    text alone (one too long is skipped, saying why). The ``reminder.sent``
    data of each."""
    db = ctx.db
    commons: dict[uuid.UUID, dict] = {}
    pass_of = _passes(db, [item.guest.id for item in going if item.row.rule != NUDGE and item.guest.response == YES])
    secrets, secret_rows = passes.further_secrets(
        [(pass_of[item.guest.id][0], item.event.workspace_id) for item in going
         if item.channel == EMAIL and item.guest.id in pass_of])
    emails: list[tuple[Going, Outgoing]] = []
    sent = []

    def went(item: Going, notification_id: uuid.UUID) -> None:
        finish(item.row, SENT, None, notification_id)
        sent.append(({"event_id": str(item.event.id), "guest_id": str(item.guest.id), "rule": item.row.rule,
                      "channel": item.channel, "notification_id": str(notification_id)}, item.event.workspace_id))

    for item in going:
        if item.event.id not in commons:
            commons[item.event.id] = guest_message_common(ctx, item.event)
        context = guest_message_context(ctx, item.event, item.guest, commons[item.event.id])
        sealed = {}
        template = NUDGE_TEMPLATE
        if item.row.rule != NUDGE:
            template = TEMPLATE
            context = {**context, "response": item.guest.response or YES, "pass_code": ""}
            if item.guest.id in pass_of:
                pass_id, code = pass_of[item.guest.id]
                sealed = {"pass_code": passes.display_code(code), "pass_secret": secrets.get(pass_id, "")}
        about = {"event_id": str(item.event.id), "guest_id": str(item.guest.id)}
        message = Outgoing(channel=item.channel, recipient=item.recipient, template=template, context=context,
                           sealed=sealed or None, workspace_id=item.event.workspace_id, about=about,
                           kind=GUEST_MESSAGE)
        if item.channel == EMAIL:
            emails.append((item, message))
            continue
        try:
            notification = queue_notification(ctx, channel=message.channel, recipient=message.recipient,
                                              template=template, context=context, sealed=message.sealed,
                                              workspace_id=message.workspace_id, about=about, kind=GUEST_MESSAGE)
        except MessageTooLong as too_long:
            finish(item.row, SKIPPED, f"the text would be too long: {too_long}"[:500])
            continue
        except PlanLimitReached as over:  # nothing counted: the batch's other messages go
            finish(item.row, SKIPPED, over.message[:500])
            continue
        went(item, notification.id)
    if secret_rows:
        db.execute(insert(PassSecret), secret_rows)
    for (item, _), notification_id in zip(emails, queue_notifications(ctx, [message for _, message in emails]),
                                          strict=True):
        went(item, notification_id)
    return sent


def _passes(db, guest_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[uuid.UUID, str]]:
    """The working pass (id, code) of each guest that has one, in one query."""
    if not guest_ids:
        return {}
    rows = db.execute(select(GuestPass.guest_id, GuestPass.id, GuestPass.code)
                      .join(InvitationLink, InvitationLink.id == GuestPass.link_id)
                      .where(GuestPass.guest_id.in_(guest_ids), InvitationLink.revoked_at.is_(None)))
    return {guest_id: (pass_id, code) for guest_id, pass_id, code in rows}


def reminder_context(ctx, event: Event, guest) -> tuple[dict, dict]:
    """The reminder's context, and its sealed part: the pass's short code
    and a further secret of it for the QR (the pass's own secret comes from
    the invitation token, which is not kept)."""
    context = {**guest_message_context(ctx, event, guest), "response": guest.response or YES, "pass_code": ""}
    found = _passes(ctx.db, [guest.id]).get(guest.id) if guest.response == YES and guest.id else None
    return context, ({"pass_code": passes.display_code(found[1]), "pass_secret": ""} if found else {})


# --- the host's view ---------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    rule: str
    words: str
    due_at: dt.datetime | None
    counts: dict[str, int]


def schedule(db, event: Event) -> list[Occurrence]:
    """Each reminder of the event, then its nudge, with its time and its
    rows per state (one query). A nudge without an RSVP deadline has no time."""
    rows = db.execute(select(ScheduledMessage.rule, ScheduledMessage.state, func.count())
                      .where(ScheduledMessage.event_id == event.id,
                             ScheduledMessage.rule.not_like(f"{NOTICE_PREFIX}%"))
                      .group_by(ScheduledMessage.rule, ScheduledMessage.state)).all()
    counts: dict[str, dict[str, int]] = {}
    for rule, state, count in rows:
        counts.setdefault(rule, dict.fromkeys(STATES, 0))[state] = count
    rules = list(event.reminders or [])
    rules += [rule for rule in counts if rule not in rules and rule != NUDGE]  # removed, but some went
    found = [Occurrence(rule, offset_words(rule), due_at(event.starts_at, event.timezone, rule),
                        counts.get(rule, dict.fromkeys(STATES, 0))) for rule in rules]
    if event.answer_nudge or NUDGE in counts:
        words = (f"please answer, {offset_words(event.answer_nudge)} the RSVP deadline" if event.answer_nudge
                 else "please answer (no longer sent)")
        found.append(Occurrence(NUDGE, words, nudge_due(event), counts.get(NUDGE, dict.fromkeys(STATES, 0))))
    return found


# Placeholders in what the host sees and tests: not a guest's door code, QR
# or unsubscribe link (the test's QR opens no door).
SAMPLE = {"pass_code": "ABCD-EFGH", "pass_secret": "SAMPLE-PASS-OPENS-NO-DOOR"}


def sample_context(ctx, event: Event, guest: Guest, kind: str) -> tuple[str, dict]:
    """The template and context of a reminder (``kind`` "reminder") or nudge
    ("nudge") to ``guest``, with placeholders for the guest's own pass."""
    if kind == NUDGE:
        return NUDGE_TEMPLATE, guest_message_context(ctx, event, guest)
    context, sealed = reminder_context(ctx, event, guest)
    return TEMPLATE, {**context, **(SAMPLE if sealed else {})}


def preview(ctx, event: Event, guest=None, kind: str = TEMPLATE):
    """The reminder (or nudge) as a guest would get it by email: a guest who
    said yes (for a nudge, one who has not answered), else a sample guest."""
    wanted = Guest.response.is_(None) if kind == NUDGE else Guest.response == YES
    guest = guest or ctx.db.scalar(select(Guest).where(Guest.event_id == event.id, wanted)
                                   .order_by(Guest.name).limit(1))
    if guest is None:
        guest = Guest(workspace_id=event.workspace_id, event_id=event.id, name="Sample Guest",
                      response=None if kind == NUDGE else YES, plus_ones_allowed=0, plus_ones_coming=0)
    template, context = sample_context(ctx, event, guest, kind)
    shown = {**context, "unsubscribe_url": "(the guest's own unsubscribe link)"}
    return ctx.registry["notifications.renderer"].render("email", template, shown), guest.name


def send_test(ctx, event: Event, user, kind: str = TEMPLATE) -> None:
    """The reminder (or nudge) to the host's own address, as a guest gets it."""
    guest = Guest(workspace_id=event.workspace_id, event_id=event.id, name=user.display_name or "Test guest",
                  response=None if kind == NUDGE else YES, plus_ones_allowed=0, plus_ones_coming=0)
    template, context = sample_context(ctx, event, guest, kind)
    if kind != NUDGE:
        context = {**context, **SAMPLE}
    queue_notification(ctx, channel="email", recipient=user.email, template=template,
                       workspace_id=event.workspace_id, context=context, about={"event_id": str(event.id)})
    record(ctx, "reminder.test_sent", actor_id=user.id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, kind=kind)
