"""The guard API's query strings and answers: flags and a guest's access log."""
from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import ConfigDict

from guestguard.contract import Moment, Out
from guestguard.events.schemas import DEFAULT_PAGE_SIZE, Cursor, Limit
from guestguard.guard.models import FLAG_STATUSES
from guestguard.guard.sensitivity import MEANINGS, SENSITIVITIES
from guestguard.validation import Input, OneOf, Query, Trimmed, UUIDOr


class FlagQuery(Query):
    status: OneOf(*FLAG_STATUSES) | None = None
    rule: Annotated[str | None, Trimmed(64, empty=None)] = None
    guest_id: UUIDOr("must be a guest's id") = None
    after: Cursor = None
    limit: Limit = DEFAULT_PAGE_SIZE


class FlagOut(Out):
    id: uuid.UUID
    event_id: uuid.UUID
    guest_id: uuid.UUID
    link_id: uuid.UUID | None
    rule: str
    score: int
    evidence: str
    details: dict[str, Any]
    status: str
    created_at: Moment
    updated_at: Moment
    closed_at: Moment | None


class FlagPage(Out):
    flags: list[FlagOut]
    next: str | None


class Reissued(Out):
    guest_id: uuid.UUID
    channel: str
    resolved: list[uuid.UUID]


class AccessUseOut(Out):
    at: Moment
    kind: str
    outcome: str
    ip: str
    network: str
    device: str
    automated: bool
    user_agent: str


class AccessTotals(Out):
    """Uses of the guest's links by kind; unusable and automated ones apart."""

    # A new kind of use must be named here: refused, not dropped.
    model_config = ConfigDict(extra="forbid")

    view: int
    rsvp: int
    calendar: int
    check_in: int
    unusable: int
    automated: int


class AccessLog(Out):
    uses: list[AccessUseOut]
    totals: AccessTotals


class GuardSettingsInput(Input):
    sensitivity: OneOf(*SENSITIVITIES)


class GuardSettingsOut(Out):
    sensitivity: str
    choices: dict[str, str]   # each sensitivity and what it means

    @classmethod
    def of(cls, workspace) -> GuardSettingsOut:
        return cls(sensitivity=workspace.guard_sensitivity, choices=MEANINGS)
