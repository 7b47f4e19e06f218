"""Events and their guest lists. Functions take the request (database
session, settings, audit context, domain events) and validated input;
authorization happened in the views."""
from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from sqlalchemy import Integer, bindparam, case, delete, func, insert, or_, select

from guestguard import timefmt
from guestguard.accounts.models import User
from guestguard.audit.services import record
from guestguard.billing import services as billing
from guestguard.db import Prepared, utcnow
from guestguard.errors import Refusal
from guestguard.events import branding
from guestguard.events.models import CANCELLED, MAYBE, NO, YES, Event, EventCover, Guest
from guestguard.events.schemas import (  # noqa: F401 - the page sizes and filters are the API's
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RESPONSE_FILTERS,
    EventFields,
    GuestFields,
    GuestInput,
    check_times,
    localize,
)
from guestguard.pagination import ID, TEXT, TIME, Key, Keyset
from guestguard.permissions import OWNER
from guestguard.validation import field_errors, normalize_phone
from guestguard.workspaces.models import Membership, Workspace

OPTIONAL_TIMES = ("ends_at", "rsvp_deadline")
# Fields null sets to None (no end, no deadline, no capacity limit, no
# reply-to, no chosen channel).
NULLABLE = (*OPTIONAL_TIMES, "capacity", "reply_to", "invitation_channel", "answer_nudge")
# Text fields that null clears.
BLANKABLE = ("description", "venue", "host_message", "host_name", "theme_colour")


class EventsError(Refusal):
    """A refusal with a machine code; views turn it into a 4xx response."""



# --- events ------------------------------------------------------------------


def find_event(db, event_id: uuid.UUID) -> Event | None:
    return db.scalar(select(Event).where(Event.id == event_id, Event.deleted_at.is_(None)))


# Every event route's look-up: built once.
EVENT_AND_WORKSPACE = (select(Event, Workspace).join(Workspace, Workspace.id == Event.workspace_id)
                       .where(Event.id == bindparam("event_id"), Event.deleted_at.is_(None),
                              Workspace.deleted_at.is_(None)))


def find_event_and_workspace(db, event_id: uuid.UUID) -> tuple[Event, Workspace] | None:
    """A live event and its live workspace, in one query."""
    row = db.execute(EVENT_AND_WORKSPACE, {"event_id": event_id}).first()
    return (row[0], row[1]) if row is not None else None


def check_channel(ctx, name: str | None, field: str) -> None:
    """A channel a host chooses must be declared, reach guests (it has a
    contact field) and have a provider here."""
    if name is None:
        return
    channel = ctx.registry["notifications.channels"].get(name)
    if channel is None or not channel.contact_field:
        known = sorted(n for n, c in ctx.registry["notifications.channels"].items() if c.contact_field)
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={field: f"must be one of {', '.join(known)}"})
    if name not in ctx.registry["notifications.providers"]:
        raise EventsError(422, "channel_unavailable", f"No provider sends {channel.label or name} here.",
                          fields={field: f"{channel.label or name} cannot be sent here"})


def default_host_name(db, workspace_id: uuid.UUID, actor_id: uuid.UUID | None) -> str:
    """Who invites, unless the host says otherwise: the event's creator, or
    for an API key's event the workspace's first owner."""
    if actor_id is not None:
        name = db.scalar(select(User.display_name).where(User.id == actor_id))
        if name:
            return name
    return db.scalar(select(User.display_name).join(Membership, Membership.user_id == User.id)
                     .where(Membership.workspace_id == workspace_id, Membership.role == OWNER)
                     .order_by(Membership.created_at, Membership.id).limit(1)) or ""


def check_event_day(ctx, reminders: list[str] | None, nudge: str | None) -> None:
    """Reminders and the nudge within the operator's limits."""
    from guestguard.reminders.services import limits_problems  # reminders build on this area

    fields = limits_problems(ctx.settings, reminders, nudge)
    if fields:
        raise EventsError(422, "validation_failed", "Some fields are invalid.", fields=fields)


def create_event(ctx, workspace_id: uuid.UUID, data: EventFields) -> Event:
    check_channel(ctx, data.invitation_channel, "invitation_channel")
    check_event_day(ctx, data.reminders, data.answer_nudge)
    if data.theme_colour:
        billing.require_feature(ctx, workspace_id, billing.BRANDING, "theme_colour")
    billing.charge(ctx, workspace_id, billing.EVENTS)
    values = data.model_dump(exclude={"workspace_id"}, exclude_none=True)
    if not values.get("host_name", "").strip():
        values["host_name"] = default_host_name(ctx.db, workspace_id, ctx.actor_id)
    if data.questions is not None:
        values["questions"] = stored_questions(data.questions)
    for field in ("starts_at", "ends_at", "rsvp_deadline"):
        if field in values:
            values[field] = localize(values[field], data.timezone)
    event = Event(workspace_id=workspace_id, created_by_id=ctx.actor_id, **values)
    ctx.db.add(event)
    ctx.db.flush()
    record(ctx, "event.created", actor_id=ctx.actor_id, workspace_id=workspace_id,
           target_type="event", target_id=event.id)
    ctx.emit("event.created", {"event_id": str(event.id), "name": event.name}, workspace_id)
    return event


# questions.py and seats.py build on this module (its EventsError): imported
# when called.
def stored_questions(questions) -> list[dict[str, Any]]:
    from guestguard.events.questions import stored

    return stored(questions)


def fill_places(ctx, event: Event) -> None:
    from guestguard.events.seats import fill_places as fill

    fill(ctx, event)


def update_event(ctx, event: Event, data: EventFields) -> Event:
    changes = data.model_dump(exclude_unset=True)
    check_channel(ctx, changes.get("invitation_channel"), "invitation_channel")
    check_event_day(ctx, changes.get("reminders"), changes.get("answer_nudge"))
    if "name" in changes and not changes["name"]:
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={"name": "is required"})
    timezone = changes.get("timezone") or event.timezone
    for field in ("starts_at", "ends_at", "rsvp_deadline"):
        if changes.get(field) is not None:
            changes[field] = localize(changes[field], timezone)
    merged = {field: changes.get(field, getattr(event, field))
              for field in ("starts_at", "ends_at", "rsvp_deadline")}
    if merged["starts_at"] is None or ("timezone" in changes and changes["timezone"] is None):
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={"starts_at" if merged["starts_at"] is None else "timezone": "is required"})
    try:
        check_times(merged["starts_at"], merged["ends_at"], merged["rsvp_deadline"], timezone)
    except PydanticCustomError as exc:
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={exc.context["field"]: exc.context["message"]}) from None
    moved = "starts_at" in changes and changes["starts_at"] != event.starts_at
    if moved and merged["starts_at"] <= utcnow():
        # Guests were told a time to come; moving it into the past tells them
        # nothing they can act on (reminders would go out at once or never).
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={"starts_at": "is in the past: an event can only be moved to a time to come"})
    if changes.get("theme_colour") and changes["theme_colour"] != event.theme_colour:
        # A plan without branding may keep or clear a colour set before, not set a new one.
        billing.require_feature(ctx, event.workspace_id, billing.BRANDING, "theme_colour", event.id)
    if "questions" in changes:
        changes["questions"] = stored_questions(data.questions or [])
    capacity_before = event.capacity
    told = (event.starts_at, event.ends_at, event.venue, event.status == CANCELLED)
    for field, given in changes.items():
        value = "" if given is None and field in BLANKABLE else given
        if value is not None or field in NULLABLE:
            setattr(event, field, value)
    if (event.starts_at, event.ends_at, event.venue, event.status == CANCELLED) != told:
        event.sequence += 1  # guests' calendars follow; the host may tell them (reminders.notices)
    if event.capacity != capacity_before:
        ctx.db.flush()
        fill_places(ctx, event)
    record(ctx, "event.updated", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, fields=sorted(changes))
    return event


def delete_event(ctx, event: Event) -> None:
    event.deleted_at = utcnow()
    record(ctx, "event.deleted", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id)


# --- the cover image ----------------------------------------------------------


def set_cover(ctx, event: Event, upload: bytes) -> EventCover:
    """Re-encode ``upload`` (see ``branding``) and make it the event's cover;
    the previous one is deleted, so its address stops answering. Raises
    EventsError 422 naming the ``cover`` field for an unusable file, and
    PlanFeatureMissing (402) on a plan without branding."""
    billing.require_feature(ctx, event.workspace_id, billing.BRANDING, "cover", event.id)
    settings = ctx.settings
    try:
        encoded = branding.reencode(upload, max_bytes=settings["covers.max_bytes"],
                                    max_width=settings["covers.max_width"])
    except branding.CoverRefused as refused:
        raise EventsError(422, "validation_failed", "The cover image was not saved.",
                          fields={"cover": str(refused)}) from None
    _drop_cover(ctx.db, event)
    cover = EventCover(workspace_id=event.workspace_id, event_id=event.id, content_type=encoded.content_type,
                       width=encoded.width, height=encoded.height, data=encoded.data)
    ctx.db.add(cover)
    ctx.db.flush()
    event.cover_id = cover.id
    record(ctx, "event.cover_set", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, cover_id=str(cover.id), bytes=len(encoded.data))
    return cover


def remove_cover(ctx, event: Event) -> bool:
    """Remove the event's cover; False when it had none (a repeated click)."""
    if event.cover_id is None:
        return False
    _drop_cover(ctx.db, event)
    event.cover_id = None
    record(ctx, "event.cover_removed", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id)
    return True


def _drop_cover(db, event: Event) -> None:
    db.execute(delete(EventCover).where(EventCover.event_id == event.id))


def find_cover(db, cover_id: uuid.UUID) -> EventCover | None:
    """A cover still in use: its event's current one, the event not deleted."""
    return db.scalar(select(EventCover).join(Event, Event.cover_id == EventCover.id)
                     .where(EventCover.id == cover_id, Event.deleted_at.is_(None)))


def cover_url(ctx, event) -> str | None:
    """The cover's public, unguessable address (see ``branding``)."""
    if event.cover_id is None:
        return None
    return ctx.url("event_cover", cover_id=str(event.cover_id),
                   signature=branding.cover_signature(ctx.settings, event.cover_id))


@dataclass(frozen=True)
class Headcount:
    yes: int = 0
    no: int = 0
    maybe: int = 0
    pending: int = 0
    expected: int = 0
    invited: int = 0
    opened: int = 0
    guests: int = 0
    # Invited and not opened: not invited - opened, since a link handed over
    # by hand (issued, never sent) can be opened by a guest never "invited".
    not_opened: int = 0
    # Yes-answers waiting for a place (not in ``yes`` nor ``expected``).
    waitlisted: int = 0


def headcounts(db, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Headcount]:
    """Counts for many events in one query."""
    if not event_ids:
        return {}

    def count(condition):
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    seated = (Guest.response == YES) & Guest.waitlisted_at.is_(None)
    rows = db.execute(
        select(
            Guest.event_id,
            count(seated), count(Guest.response == NO), count(Guest.response == MAYBE),
            count(Guest.response.is_(None)),
            func.coalesce(func.sum(case((seated, 1 + Guest.plus_ones_coming), else_=0)), 0),
            count(Guest.invited_at.is_not(None)), count(Guest.opened_at.is_not(None)),
            func.count(), count(Guest.invited_at.is_not(None) & Guest.opened_at.is_(None)),
            count(Guest.waitlisted_at.is_not(None)),
        ).where(Guest.event_id.in_(list(event_ids))).group_by(Guest.event_id)
    ).all()
    found = {row[0]: Headcount(*(int(value) for value in row[1:])) for row in rows}
    return {event_id: found.get(event_id, Headcount()) for event_id in event_ids}


# Soonest first; a guest list by name.
EVENT_ORDER = Keyset(Key(Event.starts_at, TIME), Key(Event.id, ID))
GUEST_ORDER = Keyset(Key(Guest.name, TEXT), Key(Guest.id, ID))


def list_events(db, workspace_ids: Iterable[uuid.UUID], *, after: str | None,
                limit: int) -> tuple[list[Event], str | None]:
    """The events of these workspaces, soonest first, a page at a time."""
    query = select(Event).where(Event.workspace_id.in_(list(workspace_ids)), Event.deleted_at.is_(None))
    return EVENT_ORDER.page(db, query, after=after, limit=limit)


# --- guests ------------------------------------------------------------------


def workspace_zone(db, workspace_id: uuid.UUID) -> str:
    """The time zone of the workspace's latest event ("UTC" before its first)."""
    return db.scalar(select(Event.timezone).where(Event.workspace_id == workspace_id, Event.deleted_at.is_(None))
                     .order_by(Event.created_at.desc()).limit(1)) or "UTC"


def phone_region(ctx, event: Event) -> str:
    """Where a guest's number written without its country code is read: the
    country of the event's time zone, else ``guests.default_region``."""
    return timefmt.zone_country(event.timezone) or ctx.settings["guests.default_region"]


def _guest_values(ctx, event: Event, data: GuestFields, *, creating: bool) -> dict[str, Any]:
    values = data.model_dump(exclude_unset=True)
    check_channel(ctx, values.get("preferred_channel"), "preferred_channel")
    if "group" in values:
        values["group_name"] = values.pop("group") or ""
    if values.get("phone"):
        values["phone"] = normalize_phone(values["phone"], phone_region(ctx, event))
    if (creating or "plus_ones_allowed" in values) and values.get("plus_ones_allowed") is None:
        values["plus_ones_allowed"] = event.default_plus_ones
    for text_field in ("group_name", "notes"):
        if text_field in values and values[text_field] is None:
            values[text_field] = ""
    if "tags" in values and values["tags"] is None:
        values["tags"] = []
    return values


# The contact details no two guests of an event share, and their words.
CONTACTS = {"email": "email", "phone": "phone number"}


def guests_with(db, event_id: uuid.UUID, field: str, values: Iterable[str | None]) -> dict[str, Guest]:
    """The event's guests whose ``field`` (``email`` or ``phone``) is one of ``values``, by it."""
    wanted = [value for value in values if value]
    if not wanted:
        return {}
    column = getattr(Guest, field)
    return {getattr(guest, field): guest for guest in db.scalars(
        select(Guest).where(Guest.event_id == event_id, column.in_(wanted)))}


def guests_with_emails(db, event_id: uuid.UUID, emails: Iterable[str]) -> dict[str, Guest]:
    """The event's guests who have one of ``emails``, by email."""
    return guests_with(db, event_id, "email", emails)


def checked_guest(ctx, event: Event, data: GuestInput) -> tuple[dict[str, Any], dict[str, str]]:
    """The values to store for a validated guest, or the problem with them
    (its phone number): ``(values, {})`` or ``({}, {field: problem})``."""
    try:
        return _guest_values(ctx, event, data, creating=True), {}
    except ValueError as exc:
        return {}, {"phone": str(exc)}


def check_guest(ctx, event: Event, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A guest from raw values (a spreadsheet's row), by the rules of adding
    one by hand: the same model, then ``checked_guest``."""
    try:
        data = GuestInput.model_validate(raw)
    except ValidationError as exc:
        return {}, field_errors(exc)
    return checked_guest(ctx, event, data)


def store_guests(ctx, event: Event, rows: Sequence[dict[str, Any]], **common: Any) -> list[uuid.UUID]:
    """Insert checked guests (``checked_guest``'s values) with one
    executemany INSERT; their ids, in the order given. (An INSERT …
    RETURNING of ORM objects cost ten times as much for 5,000 rows.)"""
    ids = [uuid.uuid4() for _ in rows]
    if rows:
        billing.charge(ctx, event.workspace_id, billing.GUESTS, len(rows), event_id=event.id)
        # Every row with the same keys: rows of different keys are sent as
        # separate batches, which for alternating rows means one per row.
        ctx.db.execute(insert(Guest), [{"id": guest_id, "workspace_id": event.workspace_id, "event_id": event.id,
                                        **UNSET_GUEST_FIELDS, **common, **row}
                                       for guest_id, row in zip(ids, rows, strict=True)])
    return ids


UNSET_GUEST_FIELDS = {"email": None, "phone": None, "group_name": "", "tags": [], "notes": ""}


def add_guests(ctx, event: Event, inputs: Sequence[GuestInput]) -> list[Guest]:
    """Add every guest or none: each bad row is reported with its index."""
    problems: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for index, data in enumerate(inputs):
        values, problem = checked_guest(ctx, event, data)
        if problem:
            problems[str(index)] = problem
        rows.append(values)
    taken = {field: guests_with(ctx.db, event.id, field, (row.get(field) for row in rows)) for field in CONTACTS}
    for field in CONTACTS:
        seen: dict[str, int] = {}
        for index, row in enumerate(rows):
            value = row.get(field)
            if not value:
                continue
            if value in taken[field]:
                holder = taken[field][value]
                problems.setdefault(str(index), {})[field] = (
                    f"is already on the list as {holder.name} (guest {holder.id})")
            elif value in seen:
                problems.setdefault(str(index), {})[field] = f"is also in row {seen[value]}"
            else:
                seen[value] = index
    if problems:
        conflict = contact_conflict(problems) if len(inputs) == 1 else None
        if conflict is not None:
            existing = taken[conflict][rows[0][conflict]]
            raise EventsError(409, "conflict",
                              f"{existing.name} is already on the list with this {CONTACTS[conflict]}.",
                              existing_guest_id=str(existing.id), field=conflict, fields=problems["0"])
        raise EventsError(422, "validation_failed", "Some rows are invalid; no guest was added.",
                          rows=problems)
    ids = store_guests(ctx, event, rows)
    found = {guest.id: guest for guest in ctx.db.scalars(select(Guest).where(Guest.id.in_(ids)))}
    guests = [found[guest_id] for guest_id in ids]
    actor = ctx.actor_id
    for guest in guests:
        record(ctx, "guest.created", actor_id=actor, workspace_id=event.workspace_id,
               target_type="guest", target_id=guest.id, event_id=str(event.id))
        ctx.emit("guest.created", {"event_id": str(event.id), "guest_id": str(guest.id)},
                     event.workspace_id)
    return guests


def contact_conflict(problems: dict[str, Any]) -> str | None:
    """The contact field another guest holds, when that is a lone guest's only problem."""
    found = problems.get("0", {})
    held = [field for field, problem in found.items() if field in CONTACTS and problem.startswith("is already on")]
    return held[0] if held and set(found) == set(held) else None


def find_guest(db, event_id: uuid.UUID, guest_id: uuid.UUID) -> Guest | None:
    return db.scalar(select(Guest).where(Guest.id == guest_id, Guest.event_id == event_id))


def update_guest(ctx, event: Event, guest: Guest, data: GuestFields) -> Guest:
    try:
        values = _guest_values(ctx, event, data, creating=False)
    except ValueError as exc:
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={"phone": str(exc)}) from None
    if "name" in values and not values["name"]:
        raise EventsError(422, "validation_failed", "Some fields are invalid.", fields={"name": "is required"})
    for field, words in CONTACTS.items():
        if values.get(field) and values[field] != getattr(guest, field):
            other = guests_with(ctx.db, event.id, field, [values[field]]).get(values[field])
            if other is not None:
                raise EventsError(409, "conflict", f"{other.name} is already on the list with this {words}.",
                                  existing_guest_id=str(other.id), field=field,
                                  fields={field: "is already on the list"})
    for field, value in values.items():
        setattr(guest, field, value)
    guest.plus_ones_coming = min(guest.plus_ones_coming, guest.plus_ones_allowed)
    record(ctx, "guest.updated", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="guest", target_id=guest.id, fields=sorted(values))
    return guest


def flagged_guests(db, event_id: uuid.UUID) -> int:
    """How many guests have flags awaiting review."""
    return db.scalar(select(func.count(Guest.id)).where(Guest.event_id == event_id, Guest.open_flags > 0)) or 0


# Where the invitation stands, as the guest list filters it.
INVITATION_STATES = {
    "not_invited": Guest.invited_at.is_(None),
    "not_opened": Guest.invited_at.is_not(None) & Guest.opened_at.is_(None),
}


class Listing:
    """Pages of the guest list as plain rows of ``columns`` (the guest's
    ``name`` and ``id`` among them, the page's keys), which Core statements
    read on the session's connection; they say themselves that removed guests
    are not listed (the ORM's filter of them does not reach them). A page
    without a filter, the host's usual view, is one of two statements built
    once (``db.Prepared``: the first page, a page after a name and id), its
    rows named tuples; a filtered one is built for the request."""

    def __init__(self, *columns: Any) -> None:
        self.columns = columns
        self.row = namedtuple("ListedGuest", [column.key for column in columns])
        listed = select(*columns).where(Guest.event_id == bindparam("event_id", type_=Guest.event_id.type),
                                        Guest.removed_at.is_(None))
        position = (bindparam("name", type_=Guest.name.type), bindparam("id", type_=Guest.id.type))
        more = bindparam("limit", type_=Integer)
        self.first = Prepared(GUEST_ORDER.after(listed, None).limit(more))
        self.after = Prepared(GUEST_ORDER.after(listed, position).limit(more))

    def page(self, db, event_id: uuid.UUID, *, after: str | None, limit: int) -> tuple[list[Any], str | None]:
        params = {"event_id": event_id, "limit": limit + 1}
        statement = self.first
        if after:
            params["name"], params["id"] = GUEST_ORDER.decode(after)
            statement = self.after
        rows = [self.row._make(values) for values in statement.all(db, params)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, GUEST_ORDER.cursor_of(rows[-1]) if more else None


def list_guests(db, event_id: uuid.UUID, *, after: str | None, limit: int,
                search: str = "", response: str | None = None, flagged: bool = False,
                invitation: str | None = None, listing: Listing | None = None) -> tuple[list[Any], str | None]:
    """One page of the list, by name, in one query whatever the list's size:
    whole guests, or with ``listing`` plain rows of its columns."""
    if listing is not None and not (search or response or flagged or invitation):
        return listing.page(db, event_id, after=after, limit=limit)
    if listing is not None:
        query = select(*listing.columns).where(Guest.event_id == event_id, Guest.removed_at.is_(None))
    else:
        query = select(Guest).where(Guest.event_id == event_id)
    if flagged:
        query = query.where(Guest.open_flags > 0)
    if invitation:
        query = query.where(INVITATION_STATES[invitation])
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(func.lower(Guest.name).like(pattern, escape="\\"),
                                Guest.email.like(pattern, escape="\\")))
    if response == "pending":
        query = query.where(Guest.response.is_(None))
    elif response:
        query = query.where(Guest.response == response)
    return GUEST_ORDER.page(db if listing is None else db.connection(), query, after=after, limit=limit)
