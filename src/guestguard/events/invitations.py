"""Personal invitation links, sending invitations, and the guest's answers.

A guest has no account: the link's token is the credential. Only its SHA-256
is stored; issuing a new link revokes the previous one. Functions take the
request (database session, settings, audit context, domain events); the
host-side ones are authorized by their views, the guest-side ones by the link.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm.attributes import set_committed_value

from guestguard import timefmt
from guestguard.accounts.tokens import new_token
from guestguard.activity import news
from guestguard.audit.services import record, record_many
from guestguard.billing import services as billing
from guestguard.checkin import passes
from guestguard.db import Prepared, is_sqlite, lock_name, sqlite_write_lock, utcnow
from guestguard.domain import emit_many
from guestguard.events import branding, outbound, questions, seats, services
from guestguard.events.models import CANCELLED, DRAFT, NO, YES, BulkAction, Event, Guest, InvitationLink, Rsvp
from guestguard.events.schemas import RsvpInput
from guestguard.events.services import EventsError
from guestguard.notifications.models import Notification
from guestguard.notifications.services import (
    Outgoing,
    deliver_after_commit,
    measure_sms,
    notification_row,
    queue_notifications,
)
from guestguard.notifications.suppression import GUEST_MESSAGE
from guestguard.sms_segments import MessageTooLong
from guestguard.workspaces.models import Workspace

EMAIL, SMS = "email", "sms"
CHANNELS = (EMAIL, SMS)
TEMPLATE = "invitation"
CONFIRMATION = "rsvp_confirmation"
INVALID_LINK = "This invitation link is not valid."
NO_CONTACT = "has no email address or phone number"
CHANNEL_WORDS = {EMAIL: "email", SMS: "text messages"}
UNREACHABLE = "can only be reached by a kind of message this GuestGuard cannot send"
PLAN_TEXTS_USED = "would be sent a text message, and the plan's text messages for this period are used"
MESSAGE_TOO_LONG = "message_too_long"
SEND_ALL = "invitations.send_all"
# Guests a send-all writes per round of statements (bounded, so a statement's
# parameters stay within every database's limits).
SEND_BATCH = 500
# A guest invited this recently is not sent another invitation (and new link)
# by a repeated click: the link in the message just sent keeps working.
RESEND_AFTER = dt.timedelta(seconds=60)

log = logging.getLogger(__name__)


# --- answers' deadline ------------------------------------------------------


def rsvp_closes_at(event: Event) -> dt.datetime:
    """Answers close at the deadline, or when the event starts if it has none."""
    return event.rsvp_deadline or event.starts_at


def rsvp_refusal(event: Event, now: dt.datetime | None = None) -> EventsError | None:
    """Why answers are not taken now, or None when they are. A draft takes
    none: its links were issued while it was published (a draft cannot get
    new ones), and they wait until it is published again."""
    if event.status == DRAFT:
        return EventsError(409, "event_not_published",
                           "This invitation is not open yet: your host has not published the event.")
    if event.status == CANCELLED:
        return EventsError(409, "event_cancelled",
                           "This event has been cancelled, so it no longer takes answers.")
    closes = rsvp_closes_at(event)
    if (now or utcnow()) >= closes:
        return EventsError(409, "rsvp_closed",
                           f"Answers closed on {timefmt.long_when(closes, event.timezone)}.",
                           closed_at=closes.isoformat())
    return None


def plus_ones_phrase(count: int) -> str:
    return f"{count} guest" if count == 1 else f"{count} guests"


# --- links -------------------------------------------------------------------


def access_url(ctx, raw: str) -> str:
    return ctx.url("access", token=raw)


def issue_link(ctx, guest: Guest, event: Event) -> str:
    """A new personal link for the guest; the previous one stops working.
    Returns the raw token, which is never stored and shown only this once.
    Drafts and cancelled events get none, as they get no invitations."""
    return issue_links(ctx, event, [guest])[0]


def issue_links(ctx, event: Event, guests: Sequence[Guest]) -> list[str]:
    """``issue_link`` for many guests of the event at once (their links,
    audit rows and domain events each in one statement); the raw tokens, in
    the order of ``guests``."""
    refuse_unsendable(event)
    if not guests:
        return []
    now = utcnow()
    ctx.db.execute(update(InvitationLink)
                   .where(InvitationLink.guest_id.in_([guest.id for guest in guests]),
                          InvitationLink.revoked_at.is_(None))
                   .values(revoked_at=now).execution_options(synchronize_session=False))
    actor = ctx.actor_id
    tokens = [new_token() for _ in guests]
    links = [{"id": uuid.uuid4(), "workspace_id": guest.workspace_id, "event_id": guest.event_id,
              "guest_id": guest.id, "token_hash": token_hash, "issued_by_id": actor, "created_at": now,
              "revoked_at": None} for guest, (_, token_hash) in zip(guests, tokens, strict=True)]
    ctx.db.execute(insert(InvitationLink), links)
    record_many(ctx, "invitation.issued", [("guest", link["guest_id"], {"link_id": str(link["id"])})
                                           for link in links], actor_id=actor, workspace_id=event.workspace_id)
    emit_many(ctx, [("invitation.issued", {"event_id": str(link["event_id"]), "guest_id": str(link["guest_id"]),
                                           "link_id": str(link["id"])}, link["workspace_id"]) for link in links])
    return [raw for raw, _ in tokens]


def has_live_link(db, guest_id: uuid.UUID) -> bool:
    return db.scalar(select(InvitationLink.id).where(InvitationLink.guest_id == guest_id,
                                                     InvitationLink.revoked_at.is_(None)).limit(1)) is not None


def revoke_link(ctx, guest: Guest) -> int:
    """Revoke the guest's live link, if any; returns how many were revoked."""
    revoked = ctx.db.execute(
        update(InvitationLink)
        .where(InvitationLink.guest_id == guest.id, InvitationLink.revoked_at.is_(None))
        .values(revoked_at=utcnow()).execution_options(synchronize_session=False)).rowcount
    if revoked:
        record(ctx, "invitation.revoked", actor_id=ctx.actor_id, workspace_id=guest.workspace_id,
               target_type="guest", target_id=guest.id)
    return revoked


# --- sending -----------------------------------------------------------------


def channel_words(ctx, channel: str) -> str:
    declared = ctx.registry["notifications.channels"].get(channel)
    return CHANNEL_WORDS.get(channel) or (declared.label if declared else "") or channel


def one_message_by(ctx, channel: str) -> str:
    """How one message goes, for "sent to Grace by …": "email", "text
    message", or a plugin channel's label."""
    if channel == SMS:
        return "text message"
    return channel_words(ctx, channel)


def unserved(ctx, channel: str) -> str:
    return f"{channel_words(ctx, channel)} cannot be sent here: no provider is set up for them"


CONTACT_WORDS = {"email": "email address", "phone": "phone number"}


def address_for(ctx, guest: Guest, channel: str) -> str | None:
    """The guest's address on ``channel`` (the field the channel declares)."""
    declared = ctx.registry["notifications.channels"].get(channel)
    return getattr(guest, declared.contact_field) if declared and declared.contact_field else None


def choose_channel(ctx, guest: Guest, wanted: str | None, event: Event | None = None) -> str:
    """The channel asked for; else the guest's preferred one, else the
    event's (when the guest has the address it needs and a provider serves
    it); else email when the guest has an address, else SMS. A channel no
    provider serves (SMS where none is set up) is never chosen."""
    serves = ctx.registry["notifications.providers"]
    if wanted:
        declared = ctx.registry["notifications.channels"].get(wanted)
        if declared is None or not declared.contact_field:
            raise EventsError(422, "validation_failed", f"{wanted} is not a channel guests are written on.",
                              fields={"channel": "is not a channel guests are written on"})
        if not address_for(ctx, guest, wanted):
            words = CONTACT_WORDS[declared.contact_field]
            raise EventsError(422, "validation_failed", f"{guest.name} has no {words}.",
                              fields={"channel": f"the guest has no {words}"})
        if wanted not in serves:
            raise EventsError(422, "channel_unavailable", f"{unserved(ctx, wanted).capitalize()}.",
                              fields={"channel": f"{channel_words(ctx, wanted)} cannot be sent here"})
        return wanted
    preferred = (guest.preferred_channel, event.invitation_channel if event is not None else None)
    for channel in (*preferred, EMAIL, SMS):
        if channel and channel in serves and address_for(ctx, guest, channel):
            return channel
    if guest.email or guest.phone:
        have, channel = ("an email address", EMAIL) if guest.email else ("a phone number", SMS)
        raise EventsError(422, "channel_unavailable", f"{guest.name} has only {have}, and {unserved(ctx, channel)}.",
                          guest_id=str(guest.id))
    raise EventsError(422, "no_contact", f"{guest.name} {NO_CONTACT}: add one to send the invitation.",
                      guest_id=str(guest.id))


def message_context(ctx, event: Event, guest: Guest) -> dict[str, str]:
    """What the invitation templates show (stored in the outbox: no secrets;
    the cover's address is public by design). Times are ISO 8601 with their
    offset; the templates word them in the event's zone with the timefmt
    filters."""
    return {**event_details(ctx, event), **guest_details(guest)}


def event_details(ctx, event: Event) -> dict[str, str | None]:
    """The event's part of ``message_context``: the same for every guest."""
    return {
        "host_name": event.host_name, "theme_colour": event.theme_colour,
        "theme_ink": branding.ink_for(event.theme_colour) if event.theme_colour else "",
        "cover_url": services.cover_url(ctx, event), "map_url": outbound.map_url(event.venue),
        "event_name": event.name, "timezone": event.timezone,
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat() if event.ends_at else None,
        "rsvp_deadline": event.rsvp_deadline.isoformat() if event.rsvp_deadline else None,
        "venue": event.venue, "description": event.description, "host_message": event.host_message,
    }


def guest_details(guest: Guest) -> dict[str, str]:
    """The guest's part of ``message_context``."""
    return {"guest_name": guest.name, "plus_ones_allowed": str(guest.plus_ones_allowed),
            "plus_ones_coming": str(guest.plus_ones_coming)}


def refuse_long_text(ctx, guest: Guest, event: Event, channel: str, common: dict | None = None) -> None:
    """Refuse an invitation text over the segment cap, before a link is
    issued: it is measured with a stand-in link as long as a real one.
    ``common``: the event's part of the context, when read already."""
    if channel != SMS:
        return
    stand_in = access_url(ctx, "x" * len(new_token()[0]))
    try:
        measure_sms(ctx, TEMPLATE, {**guest_message_context(ctx, event, guest, common), "invitation_url": stand_in})
    except MessageTooLong as exc:
        raise EventsError(422, MESSAGE_TOO_LONG,
                          f"The text message inviting {guest.name} would be too long: {exc}. Shorten the "
                          f"event's name or send the invitation by email.",
                          fields={"channel": str(exc)}, guest_id=str(guest.id)) from None


def too_long_for(ctx) -> str:
    """Why send-all skipped a guest whose text would be too long."""
    return (f"the invitation text would be over the limit of {ctx.settings['notifications.sms.max_segments']} "
            f"SMS segments")


def guest_message_context(ctx, event: Event, guest: Guest, common: dict | None = None) -> dict[str, str | None]:
    """What every message a host's guest gets carries: the event's details,
    and the name and reply-to address for the email's From and Reply-To
    (the host's name shown to guests, else the workspace's). ``common``:
    ``guest_message_common`` of the event, read once for many guests."""
    return {**(common if common is not None else guest_message_common(ctx, event)), **guest_details(guest)}


def guest_message_common(ctx, event: Event) -> dict[str, str | None]:
    """The part of ``guest_message_context`` every guest of the event shares
    (the workspace's name read here, once)."""
    workspace_name = "" if event.host_name else ctx.db.scalar(
        select(Workspace.name).where(Workspace.id == event.workspace_id))
    return sender_context(event_details(ctx, event), event.host_name or workspace_name or "", event.reply_to)


def sender_context(context: dict, sender_name: str, reply_to: str | None) -> dict[str, str | None]:
    return {**context, "sender_name": sender_name, "reply_to": reply_to}


def refusal_to_send(event: Event) -> EventsError | None:
    """Why no invitation of ``event`` can be sent now (None: they can)."""
    if event.status == CANCELLED:
        return EventsError(409, "event_cancelled", "This event is cancelled: invitations cannot be sent.")
    if event.status == DRAFT:
        return EventsError(409, "event_not_published", "This event is a draft: publish it before sending invitations.")
    return None


def refuse_unsendable(event: Event) -> None:
    refusal = refusal_to_send(event)
    if refusal is not None:
        raise refusal


def lock_sends(db, event: Event) -> None:
    """Invitations of one event are sent one transaction at a time: whoever
    comes next waits, then reads who the previous one invited."""
    lock_name(db, f"invitations:{event.id}", BulkAction)


def recently_invited(guest: Guest, now: dt.datetime | None = None) -> bool:
    return guest.invited_at is not None and (now or utcnow()) - guest.invited_at < RESEND_AFTER


@dataclass(frozen=True)
class SentOne:
    channel: str
    # False when the guest had been sent one moments before: nothing new was
    # queued and their link was left as it was.
    queued: bool


def send_invitation(ctx, guest: Guest, event: Event, channel: str | None = None, *,
                    fresh_link: bool = False) -> SentOne:
    """Issue a fresh link and queue the invitation through the outbox. A guest
    invited less than RESEND_AFTER ago is left alone (a repeated click),
    unless ``fresh_link`` asks for a new link anyway (a shared link replaced)."""
    refuse_unsendable(event)
    channel = choose_channel(ctx, guest, channel, event)
    lock_sends(ctx.db, event)
    ctx.db.refresh(guest, ["invited_at"])  # as committed by whoever held the lock before
    if not fresh_link and recently_invited(guest):
        return SentOne(channel, queued=False)
    refuse_long_text(ctx, guest, event, channel)
    _send(ctx, event, [(guest, channel)])
    return SentOne(channel, queued=True)


def _send(ctx, event: Event, chosen: Sequence[tuple[Guest, str]], batch_id: str | None = None,
          common: dict | None = None) -> None:
    """Under the event's send lock: for each (guest, channel), a new link,
    the message and the record; each kind of row in one statement for all.
    Texts are counted against the plan first: a refusal changes nothing."""
    billing.charge(ctx, event.workspace_id, billing.SMS, sum(channel == SMS for _, channel in chosen),
                   event_id=event.id)
    guests = [guest for guest, _ in chosen]
    tokens = issue_links(ctx, event, guests)
    common = common if common is not None else guest_message_common(ctx, event)
    about = str(event.id)
    ids = queue_notifications(ctx, [
        Outgoing(channel=channel, recipient=address_for(ctx, guest, channel), template=TEMPLATE,
                 context=guest_message_context(ctx, event, guest, common),
                 sealed={"invitation_url": access_url(ctx, raw)}, workspace_id=event.workspace_id,
                 about={"event_id": about, "guest_id": str(guest.id)}, kind=GUEST_MESSAGE, plan_counted=True)
        for (guest, channel), raw in zip(chosen, tokens, strict=True)])
    now = utcnow()
    ctx.db.execute(INVITED, [{"guest_id": guest.id, "now": now, "notification_id": notification_id}
                             for guest, notification_id in zip(guests, ids, strict=True)])
    for guest, notification_id in zip(guests, ids, strict=True):
        set_committed_value(guest, "invited_at", now)
        set_committed_value(guest, "invitation_id", notification_id)
    details = {"batch_id": batch_id} if batch_id else {}
    record_many(ctx, "invitation.sent", [
        ("guest", guest.id, {"channel": channel, "notification_id": str(notification_id), **details})
        for (guest, channel), notification_id in zip(chosen, ids, strict=True)],
        actor_id=ctx.actor_id, workspace_id=event.workspace_id)
    emit_many(ctx, [("invitation.sent", {"event_id": about, "guest_id": str(guest.id), "channel": channel},
                     event.workspace_id) for guest, channel in chosen])


@dataclass(frozen=True)
class Sent:
    queued: int
    skipped: list[dict[str, str]]
    batch_id: str


def plan_sends(ctx, event: Event, common: dict | None = None) -> tuple[list[tuple[Guest, str]],
                                                                       list[dict[str, str]]]:
    """Who send-all would invite and on which channel, by name, and who it
    would skip and why; sends nothing. ``common``: the event's part of the
    messages' context (``guest_message_common``), when read already."""
    common = common if common is not None else guest_message_common(ctx, event)
    guests = ctx.db.scalars(select(Guest).where(Guest.event_id == event.id, Guest.invited_at.is_(None))
                            .order_by(Guest.name, Guest.id).execution_options(populate_existing=True))
    planned, skipped = [], []
    for guest in guests:
        try:
            channel = choose_channel(ctx, guest, None, event)
            refuse_long_text(ctx, guest, event, channel, common)
        except EventsError as unsendable:
            reason = {"no_contact": NO_CONTACT, MESSAGE_TOO_LONG: too_long_for(ctx)}.get(unsendable.code, UNREACHABLE)
            skipped.append({"guest_id": str(guest.id), "name": guest.name, "reason": reason})
            continue
        planned.append((guest, channel))
    return within_text_allowance(ctx, event, planned, skipped)


def within_text_allowance(ctx, event: Event, planned: list[tuple[Guest, str]],
                          skipped: list[dict[str, str]]) -> tuple[list[tuple[Guest, str]], list[dict[str, str]]]:
    """Texts past what the plan has left this period wait (the emails still
    go): their guests are listed as skipped for the plan, to send again
    after an upgrade."""
    left = billing.remaining(ctx, event.workspace_id, billing.SMS, event_id=event.id)
    if left is None:
        return planned, skipped
    kept = []
    for guest, channel in planned:
        if channel == SMS and left == 0:
            skipped.append({"guest_id": str(guest.id), "name": guest.name, "reason": PLAN_TEXTS_USED})
            continue
        left -= channel == SMS
        kept.append((guest, channel))
    return kept, skipped


def send_all(ctx, event: Event) -> Sent:
    """Invite every guest not invited yet; those without an email address or
    phone number are skipped and listed. Runs one at a time per event and is
    recorded as a batch: clicks at once, or a repeat, invite each guest once."""
    refuse_unsendable(event)
    lock_sends(ctx.db, event)
    batch = BulkAction(workspace_id=event.workspace_id, event_id=event.id, action=SEND_ALL,
                       actor_id=ctx.actor_id, queued=0, skipped=0)
    ctx.db.add(batch)
    ctx.db.flush()
    common = guest_message_common(ctx, event)
    planned, skipped = plan_sends(ctx, event, common)
    for start in range(0, len(planned), SEND_BATCH):
        _send(ctx, event, planned[start:start + SEND_BATCH], batch_id=str(batch.id), common=common)
    batch.queued = len(planned)
    batch.skipped = len(skipped)
    record(ctx, "invitation.sent_all", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, queued=batch.queued, skipped=batch.skipped,
           batch_id=str(batch.id))
    return Sent(batch.queued, skipped, str(batch.id))


# --- the guest's side --------------------------------------------------------


_guests = Guest.__table__
INVITED = (update(_guests).where(_guests.c.id == bindparam("guest_id"))
           .values(invited_at=bindparam("now"), invitation_id=bindparam("notification_id"),
                   updated_at=bindparam("now")))
OPENED = (update(_guests).where(_guests.c.id == bindparam("guest_id"), _guests.c.opened_at.is_(None),
                                _guests.c.removed_at.is_(None))
          .values(opened_at=bindparam("now"), updated_at=bindparam("now")))


def record_open(ctx, link, guest) -> bool:
    """Note the first time the guest opens their invitation; True that time.
    Callers leave out link previews and crawlers: no person opened it. Once
    the guest's row says it was opened, nothing is written (the usual case:
    a repeat view costs no UPDATE)."""
    if guest.opened_at is not None:
        return False
    now = utcnow()
    first = ctx.db.execute(OPENED, {"guest_id": guest.id, "now": now}).rowcount == 1
    if first:
        guest.opened_at = now
        news.tell_host(ctx, "invitation.opened", workspace_id=guest.workspace_id, event_id=guest.event_id,
                       guest_id=guest.id, details={"link_id": str(link.id)},
                       payload={"event_id": str(guest.event_id), "guest_id": str(guest.id)},
                       summary=f"{guest.name} opened the invitation")
    return first


def answer_words(response: str, plus_ones: int) -> str:
    """"yes, bringing 2 guests", "no", "maybe"."""
    if response == YES and plus_ones:
        return f"yes, bringing {plus_ones_phrase(plus_ones)}"
    return response


def check_plus_ones(guest, plus_ones: int) -> None:
    if plus_ones > guest.plus_ones_allowed:
        allowed = guest.plus_ones_allowed
        message = ("must be 0: this invitation is for you alone" if allowed == 0
                   else f"must be at most {allowed}: your invitation is for you and up to "
                        f"{plus_ones_phrase(allowed)}")
        raise EventsError(422, "validation_failed", "Some fields are invalid.", fields={"plus_ones": message})


@dataclass(slots=True)
class Answer:
    """What the guest wrote with an answer, as their pages show it."""

    id: uuid.UUID
    dietary: str
    message: str
    plus_one_names: list
    answers: dict


# Under the guest's row lock, in one statement: the guest's current answer
# and the latest one recorded (what a concurrent answer may just have
# committed). SQLite has no row locks: its write lock is taken first.
_answers = Rsvp.__table__


def latest_answer(guest_id_column, *columns: str) -> list:
    """``columns`` of the guest's latest answer, each a scalar subquery run
    once for the one row selected: an index probe on ``rsvps.guest_id``.
    Not a join on the latest answer: PostgreSQL may plan that (a prepared
    statement's generic plan, made while the table was small) as a scan of
    every answer compared with every other, which grows with the square of
    the table; a subquery per selected row grows at worst with the table."""
    return [select(_answers.c[name]).where(_answers.c.guest_id == guest_id_column)
            .order_by(_answers.c.created_at.desc(), _answers.c.id.desc()).limit(1)
            .scalar_subquery().label(f"latest_{name}") for name in columns]


KEPT = ("response", "plus_ones", "dietary", "message", "plus_one_names", "answers")
_events, _workspaces = Event.__table__, Workspace.__table__


@dataclass(slots=True)
class Contact:
    """What an answer's confirmation needs beyond the guest's page, read
    with the guest's row lock: the guest's addresses and channel, the
    event's invitation channel and reply-to address, the workspace's name."""

    email: str | None
    phone: str | None
    preferred_channel: str | None
    invitation_channel: str | None
    reply_to: str | None
    workspace_name: str


@dataclass(slots=True)
class Addressee:
    """The guest as the confirmation addresses them (``choose_channel``,
    ``guest_details``)."""

    id: uuid.UUID
    name: str
    email: str | None
    phone: str | None
    preferred_channel: str | None
    plus_ones_allowed: int
    plus_ones_coming: int


# On the session's DBAPI connection (``db.Prepared``): SQLAlchemy's
# execution of this statement (its cache key, context and result) cost an
# answer more CPU than the statement's round trip.
LOCKED_ANSWER = Prepared(
    select(_guests.c.response, _guests.c.waitlisted_at, _guests.c.responded_at,
           # Forgotten or removed by the host while the answer waited for the row.
           func.coalesce(_guests.c.forgotten_at, _guests.c.removed_at).label("gone_at"),
           *latest_answer(_guests.c.id, "created_at", "id", *KEPT),
           _guests.c.email, _guests.c.phone, _guests.c.preferred_channel, _events.c.invitation_channel,
           _events.c.reply_to, _workspaces.c.name)
    .select_from(_guests)
    .join(_events, _events.c.id == _guests.c.event_id)
    .join(_workspaces, _workspaces.c.id == _guests.c.workspace_id)
    .where(_guests.c.id == bindparam("guest_id"))
    .with_for_update(key_share=True, of=_guests)
)
_CONTACT = len(Contact.__slots__)
# An answer's writes, with the news of it in one statement on PostgreSQL
# (``news.Along``): the answer's row, the guest's, and the confirmation's
# outbox row.
NEW_ANSWER = news.Along("new_answer", news.insert_row(_answers, "answer"))
ANSWERED = news.Along("answered", update(_guests).where(_guests.c.id == bindparam("answered_guest_id")).values(
    response=bindparam("answered_response"), plus_ones_coming=bindparam("answered_plus_ones"),
    plus_one_names=bindparam("answered_plus_one_names", type_=_guests.c.plus_one_names.type),
    answers=bindparam("answered_answers", type_=_guests.c.answers.type),
    waitlisted_at=bindparam("answered_waitlisted_at", type_=_guests.c.waitlisted_at.type),
    responded_at=bindparam("answered_now", type_=_guests.c.responded_at.type),
    updated_at=bindparam("answered_now", type_=_guests.c.updated_at.type)))
CONFIRMATION_ROW = news.Along("confirmation", news.insert_row(Notification.__table__, "confirmation"))


def confirmation(ctx, guest, event, contact: Contact, raw_token: str, response: str, plus_ones: int,
                 guest_pass: passes.PassFaces | None = None) -> dict | None:
    """The outbox row of the RSVP confirmation of the answer just recorded
    (``guest``, brought up to date): what the host now knows, the link to
    change it and the calendar file's link, on the guest's channel. A guest
    message (an unsubscribe from the workspace, a bounce or a complaint stops
    it; texts wait for the daytime). None when the guest cannot be reached
    on any channel served here. The caller writes the row and queues its
    delivery (``deliver_after_commit``)."""
    addressee = Addressee(guest.id, guest.name, contact.email, contact.phone, contact.preferred_channel,
                          guest.plus_ones_allowed, guest.plus_ones_coming)
    try:
        channel = choose_channel(ctx, addressee, None, contact)
    except EventsError:
        return None  # the answer is recorded; there is nowhere to confirm it
    context = {**sender_context(message_context(ctx, event, addressee), event.host_name or contact.workspace_name,
                                contact.reply_to),
               "response": response, "plus_ones": str(plus_ones),
               "waitlisted": "yes" if guest.waitlisted_at is not None else "", "pass_code": "", "pass_secret": ""}
    # The pass is a credential at the door: sealed, like the links. Its QR
    # code is drawn when the message is rendered for sending (``qr_png``),
    # by the worker, not in the guest's request (a tenth of a second's CPU
    # a hundred answers).
    pass_faces = {"pass_code": guest_pass.code_display, "pass_secret": guest_pass.secret} if guest_pass else {}
    try:
        return notification_row(
            ctx, channel=channel, recipient=address_for(ctx, addressee, channel), template=CONFIRMATION,
            workspace_id=event.workspace_id, context=context, kind=GUEST_MESSAGE,
            sealed={"change_url": access_url(ctx, raw_token),
                    "calendar_url": ctx.url("access_ics", token=raw_token), **pass_faces},
            about={"event_id": str(event.id), "guest_id": str(guest.id)})
    except (billing.PlanLimitReached, MessageTooLong) as exc:
        # The host's plan has no texts left, or the text would be too long:
        # the guest's answer is recorded all the same, unconfirmed (the
        # refusal is the host's to see, in the audit log).
        log.warning("the answer of guest %s is not confirmed: %s", guest.id, type(exc).__name__)
        return None


def _prefixed(prefix: str, row: dict) -> dict:
    return {f"{prefix}_{name}": value for name, value in row.items()}


def confirm_after_places(ctx, link, guest, event, contact: Contact, raw_token: str) -> dict | None:
    """For an event with places: the places this answer freed go to the
    waitlist, in order, before the confirmation says whether ``guest`` has
    one (a guest who waited behind others may get theirs in the same
    breath); then the confirmation's row is written. That row, or None."""
    if any(promoted.id == guest.id for promoted in seats.fill_places(ctx, event)):
        guest.waitlisted_at = None
    confirm = confirmation(ctx, guest, event, contact, raw_token, guest.response, guest.plus_ones_coming,
                           passes.for_guest(ctx, link, guest, event, raw_token, new=True))
    if confirm is not None:
        CONFIRMATION_ROW.alone.write(ctx.db, _prefixed("confirmation", confirm))
    return confirm


def tell_host_of_answer(ctx, guest, event, rsvp_id: uuid.UUID, previous: str | None, *, first: bool,
                        along: list) -> None:
    """The host's news of the answer ``guest`` (brought up to date) just
    gave, with the answer's writes ``along``."""
    response, plus_ones, waitlisted = guest.response, guest.plus_ones_coming, guest.waitlisted_at is not None
    payload = {"event_id": str(event.id), "guest_id": str(guest.id), "response": response,
               "plus_ones": plus_ones, "waitlisted": waitlisted}
    if not first:
        payload["previous"] = previous
    words = answer_words(response, plus_ones) + (" (waitlisted: the event is full)" if waitlisted else "")
    summary = (f"{guest.name} answered {words}" if first
               else f"{guest.name} changed the answer from {previous or 'none'} to {words}")
    news.tell_host(ctx, "rsvp.received" if first else "rsvp.changed", workspace_id=guest.workspace_id,
                   event_id=event.id, guest_id=guest.id,
                   details={"rsvp_id": str(rsvp_id), "response": response, "plus_ones": plus_ones,
                            "previous": previous, "waitlisted": waitlisted},
                   payload=payload, summary=summary,
                   data={"response": response, "plus_ones": plus_ones, "previous": previous}, along=along)


def locked_answer(db, guest_id: uuid.UUID) -> tuple:
    """The guest's row, locked, with its latest answer and where to confirm
    a new one (``LOCKED_ANSWER``)."""
    locked = LOCKED_ANSWER.first(db, {"guest_id": guest_id})
    if locked is None:
        raise NoResultFound("the answering guest's row is gone")
    return locked


def submit_rsvp(ctx, link, guest, event, data: RsvpInput, raw_token: str) -> tuple[Answer, bool]:
    """Record the guest's answer and queue its confirmation to the guest.
    The same answer as the latest records nothing new and sends nothing (a
    retried request, a double click): returns that one. Returns (answer,
    whether it is new). ``guest`` (the row the guest's request read) is
    brought up to date; ``raw_token`` is the link the guest used, which the
    confirmation carries to change the answer. ``guest.waitlisted_at`` is
    brought up to date too (a yes to a full event waits; see seats).

    On PostgreSQL an answer is the guest's row lock (which also reads where
    to confirm it), then one statement: the answer, the guest's row, the
    host's news and the confirmation (with a yes, its pass before it)."""
    refusal = rsvp_refusal(event)
    if refusal is not None:
        raise refusal
    plus_ones = 0 if data.response == NO else data.plus_ones
    check_plus_ones(guest, plus_ones)
    names, replies = questions.check_reply(event, data.response, plus_ones, data.plus_one_names, data.answers)
    db = ctx.db
    if is_sqlite(db):
        sqlite_write_lock(db, Guest)
    if event.capacity is not None:
        seats.lock_places(db, event.id)  # before the guest's row: the order every path keeps
    # One answer at a time per guest: FOR NO KEY UPDATE (see db.lock_row).
    locked = locked_answer(db, guest.id)
    previous, waitlisted_at, responded_at, gone_at, latest_at, latest_id, *latest = locked[:-_CONTACT]
    if gone_at is not None:
        # The host forgot or removed the guest while this answer waited for
        # the row: the link it came through is gone, and so is the answer.
        raise EventsError(404, "not_found", "This invitation link is not valid.")
    if responded_at != latest_at:
        # PostgreSQL, READ COMMITTED: the lock waited for an answer that
        # committed meanwhile; the locked row is its version, but the
        # subqueries read the snapshot from before it. Asked again (a new
        # statement, a new snapshot, the lock held), the latest answer is
        # the one just committed, so the same answer twice records once.
        locked = locked_answer(db, guest.id)
        previous, waitlisted_at, responded_at, _, latest_at, latest_id, *latest = locked[:-_CONTACT]
    contact = Contact(*locked[-_CONTACT:])
    answer = (data.response, plus_ones, data.dietary, data.message, names, replies)
    if latest_id is not None and tuple(latest) == answer:
        guest.waitlisted_at = waitlisted_at
        return Answer(latest_id, data.dietary, data.message, names, replies), False
    now = utcnow()
    waitlisted_at = seats.seat(db, event, guest.id, previous, waitlisted_at, data.response, plus_ones, now)
    rsvp_id = uuid.uuid4()
    guest.response, guest.plus_ones_coming, guest.responded_at = data.response, plus_ones, now
    guest.plus_one_names, guest.answers, guest.waitlisted_at = names, replies, waitlisted_at
    along = [(NEW_ANSWER, _prefixed("answer", {
                 "id": rsvp_id, "workspace_id": guest.workspace_id, "event_id": event.id, "guest_id": guest.id,
                 "link_id": link.id, "response": data.response, "plus_ones": plus_ones, "dietary": data.dietary,
                 "message": data.message, "plus_one_names": names, "answers": replies, "created_at": now})),
             (ANSWERED, _prefixed("answered", {
                 "guest_id": guest.id, "response": data.response, "plus_ones": plus_ones, "plus_one_names": names,
                 "answers": replies, "waitlisted_at": waitlisted_at, "now": now}))]
    confirm = None
    if event.capacity is None:
        # Nobody waits for a place: the confirmation is known now, and goes
        # in with the rest.
        confirm = confirmation(ctx, guest, event, contact, raw_token, data.response, plus_ones,
                               passes.for_guest(ctx, link, guest, event, raw_token, new=True))
        if confirm is not None:
            along.append((CONFIRMATION_ROW, _prefixed("confirmation", confirm)))
    tell_host_of_answer(ctx, guest, event, rsvp_id, previous, first=latest_id is None, along=along)
    if event.capacity is not None:
        confirm = confirm_after_places(ctx, link, guest, event, contact, raw_token)
    if confirm is not None:
        deliver_after_commit(ctx, confirm["id"])
    return Answer(rsvp_id, data.dietary, data.message, names, replies), True
