"""Input of the events API: events and guests."""
from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from guestguard.validation import Input, field_problem, normalize_email

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=5000)]
PlusOnes = Annotated[int, Field(ge=0, le=20)]


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not a time zone we know: use a name like Europe/Paris") from None
    return value


TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_timezone)]


def localize(moment: dt.datetime | None, timezone: str) -> dt.datetime | None:
    """A time without an offset is wall-clock time in the event's zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))


class EventFields(Input):
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


class EventInput(EventFields):
    workspace_id: uuid.UUID
    name: Name
    starts_at: dt.datetime
    timezone: TimeZone

    @model_validator(mode="after")
    def _times(self) -> EventInput:
        check_times(self.starts_at, self.ends_at, self.rsvp_deadline, self.timezone)
        return self


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
    name: Name | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    plus_ones_allowed: PlusOnes | None = None
    group: Annotated[str, StringConstraints(max_length=100)] | None = None
    tags: Annotated[list[str], Field(max_length=20), AfterValidator(_tags)] | None = None
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None


class GuestInput(GuestFields):
    name: Name


class RsvpInput(Input):
    response: Literal["yes", "no", "maybe"]
    plus_ones: PlusOnes = 0
    dietary: Annotated[str, StringConstraints(max_length=500)] = ""
    message: Annotated[str, StringConstraints(max_length=2000)] = ""
