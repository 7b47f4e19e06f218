"""Input of the events API and forms (events, guests, answers), its query
strings, and its answers."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from guestguard.contract import Moment, Out
from guestguard.events.branding import normalize_colour
from guestguard.timefmt import UnknownZone, zone
from guestguard.validation import (
    Input,
    OneOf,
    Query,
    QueryFlag,
    Trimmed,
    UUIDOr,
    WholeNumber,
    field_problem,
    normalize_email,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
RESPONSE_FILTERS = ("yes", "no", "maybe", "pending")
INVITATION_FILTERS = ("not_invited", "not_opened")

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=5000)]
PlusOnes = Annotated[int, Field(ge=0, le=20)]
# A channel's name; whether it is declared is checked by the service.
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[a-z0-9_]+$")]


def _timezone(value: str) -> str:
    try:
        zone(value)
    except UnknownZone:
        raise ValueError("is not a time zone we know: use a name like Europe/Paris") from None
    return value


def _reminders(values: list[str]) -> list[str]:
    from guestguard.reminders.services import check_reminders  # reminders build on this area

    return check_reminders(values)


def _nudge(value: str) -> str | None:
    from guestguard.reminders.services import check_nudge

    return check_nudge(value)


TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_timezone)]
HostName = Annotated[str, StringConstraints(max_length=100)]
# "#1f5fbf" (or "1F5FBF", "#15b"), stored as "#1f5fbf"; "" for the house's colours.
ThemeColour = Annotated[str, StringConstraints(max_length=7), AfterValidator(normalize_colour)]


def localize(moment: dt.datetime | None, timezone: str) -> dt.datetime | None:
    """A time without an offset is wall-clock time in the event's zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone(timezone))


# --- the host's questions (questions.py) ---------------------------------------------

TEXT, CHOICE, YES_NO = "text", "choice", "yes_no"
MAX_QUESTIONS = 10
ANSWER_LENGTH = 500
NAME_LENGTH = 100
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ChoiceText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
QuestionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]


class QuestionInput(Input):
    """One question; without ``id`` a new one (it gets an id)."""

    id: QuestionId | None = None
    label: Label
    kind: Literal["text", "choice", "yes_no"]
    required: bool = False
    choices: Annotated[list[ChoiceText], Field(max_length=20)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _choices(self) -> QuestionInput:
        if self.kind == CHOICE:
            if len(set(self.choices)) != len(self.choices) or len(self.choices) < 2:
                raise field_problem("choices", "must be 2 to 20 different choices for a choice question")
        elif self.choices:
            raise field_problem("choices", "are only for a question answered with one choice from a list")
        return self


Questions = Annotated[list[QuestionInput], Field(max_length=MAX_QUESTIONS)]



class EventFields(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"venue": "The Old Library", "ends_at": "2030-06-21T23:30:00+01:00"}]})

    name: Name | None = None
    description: Text | None = None
    venue: Annotated[str, StringConstraints(max_length=300)] | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    timezone: TimeZone | None = None
    rsvp_deadline: dt.datetime | None = None
    default_plus_ones: PlusOnes | None = None
    host_message: Text | None = None
    status: Literal["draft", "published", "cancelled"] | None = None
    reply_to: Annotated[str, StringConstraints(max_length=320)] | None = None
    invitation_channel: ChannelName | None = None

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None
    # Shown to guests: "Hana Host invites you". Left out when creating: the
    # creator's name (an API key's event: the workspace owner's).
    host_name: HostName | None = None
    theme_colour: ThemeColour | None = None
    # The RSVP form asks each plus-one's name.
    ask_plus_one_names: bool | None = None
    # The host's questions, all of them (a list replaces the one before).
    questions: Questions | None = None
    # Places for yes-answers and their plus-ones; null: no limit.
    capacity: Annotated[int, Field(ge=1, le=100000)] | None = None
    # Reminders before the start to guests who said yes or maybe: "7d"
    # (days) or "3h" (hours), at most 5; [] sends none.
    reminders: Annotated[list[Annotated[str, StringConstraints(max_length=8)]], Field(max_length=20),
                         AfterValidator(_reminders)] | None = None
    # A "please answer" message to guests invited who have not answered,
    # this long before the RSVP deadline: "2d" or "12h"; null or "" sends none.
    answer_nudge: Annotated[str, StringConstraints(max_length=8), AfterValidator(_nudge)] | None = None


class EventInput(EventFields):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "workspace_id": "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "name": "Summer gala",
        "starts_at": "2030-06-21T19:00:00+01:00", "timezone": "Europe/London", "venue": "The Old Library",
        "rsvp_deadline": "2030-06-14T23:59:00+01:00", "default_plus_ones": 1, "status": "published",
        "host_name": "Hana Host", "theme_colour": "#1f5fbf"}]})

    workspace_id: uuid.UUID
    name: Name
    starts_at: dt.datetime
    timezone: TimeZone

    @model_validator(mode="after")
    def _times(self) -> EventInput:
        check_times(self.starts_at, self.ends_at, self.rsvp_deadline, self.timezone)
        return self


class DuplicateInput(Input):
    """A copy of an event: a draft, with the same details unless said here."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Summer gala 2031", "starts_at": "2031-06-20T19:00:00", "with_guests": True}]})

    # Left out: the same name.
    name: Name | None = None
    # In the event's time zone (an offset, when given, is honoured); left
    # out: the same start. The end and the RSVP deadline move with it.
    starts_at: dt.datetime | None = None
    # The guest list, without links, answers, invitations or flags.
    with_guests: bool = False


def check_times(starts_at, ends_at, rsvp_deadline, timezone) -> None:
    starts = localize(starts_at, timezone)
    ends = localize(ends_at, timezone)
    deadline = localize(rsvp_deadline, timezone)
    if ends is not None and starts is not None and ends <= starts:
        raise field_problem("ends_at", "must be after starts_at")
    if deadline is not None and starts is not None and deadline > starts:
        raise field_problem("rsvp_deadline", "must not be after starts_at")


def _tags(values: list[str]) -> list[str]:
    cleaned = []
    for value in values:
        tag = value.strip()
        if not tag or len(tag) > 50:
            raise ValueError("each tag is 1 to 50 characters")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


class GuestFields(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"notes": "Vegetarian", "plus_ones_allowed": 2}]})

    name: Name | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    plus_ones_allowed: PlusOnes | None = None
    group: Annotated[str, StringConstraints(max_length=100)] | None = None
    tags: Annotated[list[str], Field(max_length=20), AfterValidator(_tags)] | None = None
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None
    preferred_channel: ChannelName | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None


class GuestInput(GuestFields):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Grace Hopper", "email": "grace@example.com", "phone": "+44 20 7946 0958",
        "plus_ones_allowed": 1, "group": "Family", "tags": ["vip"], "notes": "Vegetarian"}]})

    name: Name


class RsvpInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "response": "yes", "plus_ones": 1, "dietary": "No nuts", "message": "Can't wait!"}]})

    response: Literal["yes", "no", "maybe"]
    plus_ones: PlusOnes = 0
    dietary: Annotated[str, StringConstraints(max_length=500)] = ""
    message: Annotated[str, StringConstraints(max_length=2000)] = ""
    # Asked when the event wants them: one name per plus-one.
    plus_one_names: Annotated[list[Annotated[str, StringConstraints(max_length=NAME_LENGTH)]],
                              Field(max_length=20)] = Field(default_factory=list)
    # The host's questions answered: {question id: answer}.
    answers: Annotated[dict[Annotated[str, StringConstraints(max_length=8)],
                            Annotated[str, StringConstraints(max_length=ANSWER_LENGTH)]],
                       Field(max_length=MAX_QUESTIONS)] = Field(default_factory=dict)


class SendInput(Input):
    """How to send an invitation: by default email when the guest has an address, else SMS."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"channel": "email"}]})

    channel: ChannelName | None = None


# --- query strings -----------------------------------------------------------------

# A page's size and where it starts: the ``next`` of the page before.
Limit = WholeNumber(1, MAX_PAGE_SIZE, f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
Cursor = Annotated[str | None, BeforeValidator(lambda value: value or None)]


class EventQuery(Query):
    # Someone else's workspace, or a malformed id, is no different from one that does not exist.
    workspace_id: UUIDOr(None) = None
    after: Cursor = None
    limit: Limit = DEFAULT_PAGE_SIZE


class GuestQuery(Query):
    response: OneOf(*RESPONSE_FILTERS) | None = None
    q: Annotated[str, Trimmed(100)] = ""
    flagged: QueryFlag = False
    invitation: OneOf(*INVITATION_FILTERS) | None = None
    after: Cursor = None
    limit: Limit = DEFAULT_PAGE_SIZE


# --- answers -----------------------------------------------------------------------


class HeadcountOut(Out):
    # Yes-answers with a place; waitlisted ones are counted apart.
    yes: int
    no: int
    maybe: int
    pending: int
    expected: int
    invited: int
    opened: int
    not_opened: int
    guests: int
    waitlisted: int


class EventOut(Out):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str
    venue: str
    starts_at: Moment
    ends_at: Moment | None
    timezone: str
    rsvp_deadline: Moment | None
    default_plus_ones: int
    host_message: str
    status: str
    reply_to: str | None
    invitation_channel: str | None
    host_name: str
    theme_colour: str
    # Where guests' pages and emails fetch the cover image; None without one.
    cover_url: str | None = None
    ask_plus_one_names: bool
    questions: list[dict[str, Any]]
    capacity: int | None
    reminders: list[str]
    answer_nudge: str | None = None
    created_at: Moment


class CountedEventOut(EventOut):
    headcount: HeadcountOut


class OneEvent(Out):
    event: CountedEventOut


class CopiedAlready(OneEvent):
    """The same copy was asked for moments ago: the copy made then."""


class ChangedEvent(Out):
    event: EventOut


class EventPage(Out):
    events: list[CountedEventOut]
    next: str | None


class DeliveryOut(Out):
    """What became of the guest's latest invitation (docs/api.md lists the states)."""

    state: str
    label: str
    channel: str | None
    reason: str | None


class GuestOut(Out):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    email: str | None
    phone: str | None
    plus_ones_allowed: int
    group: str = Field(validation_alias="group_name")
    tags: list[str]
    notes: str
    response: str | None
    plus_ones_coming: int
    responded_at: Moment | None
    invited_at: Moment | None
    opened_at: Moment | None
    open_flags: int
    preferred_channel: str | None
    delivery: DeliveryOut
    plus_one_names: list[str]
    answers: dict[str, str]
    # Set while the guest's yes waits for a place.
    waitlisted_at: Moment | None


class OneGuest(Out):
    guest: GuestOut


class GuestList(Out):
    guests: list[GuestOut]


class GuestPage(Out):
    guests: list[GuestOut]
    next: str | None


# Invitation links (links_api.py).


class IssuedLink(Out):
    token: str
    url: str
    guest_id: uuid.UUID


class InvitationSent(Out):
    guest_id: uuid.UUID
    channel: str
    # False when the guest was sent one moments before: nothing new was sent.
    queued: bool
    invited_at: Moment | None


class SkippedGuest(Out):
    guest_id: uuid.UUID
    name: str
    reason: str


class InvitationsSent(Out):
    batch_id: uuid.UUID
    queued: int
    skipped: list[SkippedGuest]


class InvitedGuest(Out):
    """What a guest may know: their own invitation, nothing about others."""

    name: str
    plus_ones_allowed: int
    response: str | None
    plus_ones_coming: int
    dietary: str
    message: str
    responded_at: Moment | None
    plus_one_names: list[str]
    answers: dict[str, str]
    waitlisted: bool


class InvitedEvent(Out):
    """The event in its own time zone."""

    name: str
    description: str
    venue: str
    starts_at: Moment
    ends_at: Moment | None
    timezone: str
    when: str
    rsvp_deadline: Moment | None
    host_message: str
    status: str
    host_name: str
    theme_colour: str
    cover_url: str | None = None
    map_url: str | None = None
    ask_plus_one_names: bool
    questions: list[dict[str, Any]]


class RsvpState(Out):
    open: bool
    closes_at: Moment
    closed_reason: str | None


class GuestInvitation(Out):
    guest: InvitedGuest
    event: InvitedEvent
    rsvp: RsvpState


class RsvpAnswer(GuestInvitation):
    recorded: bool


class AlertInput(Input):
    """How the caller hears of the event's answers by email: ``each`` answer
    as it comes, a ``daily`` digest at 08:00 in the event's time zone, or
    ``off``."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"mode": "daily"}]})

    mode: Literal["each", "daily", "off"]


class AlertOut(Out):
    mode: Literal["each", "daily", "off"]
