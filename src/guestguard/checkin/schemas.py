"""What the door API reads and answers."""
from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from guestguard.contract import Moment, Out
from guestguard.validation import Input, Query, Trimmed, field_problem

# A scan id the door made: a UUID, or any 8 to 64 letters, digits, "-" and "_".
ScanId = Annotated[str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class CheckInInput(Input):
    """A scan at the door: the pass's QR content or short code, or a guest
    found by name; ``plus_ones``: how many of their guests come in with
    them (left out: all they said they bring, on their first check-in)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"code": "K7MQ-4XPA", "scan_id": "5f0c7d1e-8c3e-4a52-9d07-1b1f0a6c2d11"},
        {"guest_id": "0b7e6f8a-3c1d-4b2e-9f50-6a7d8c9e0f12", "scan_id": "door2-000172", "plus_ones": 1}]})

    scan_id: ScanId
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    guest_id: uuid.UUID | None = None
    plus_ones: Annotated[int, Field(ge=0, le=20)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> CheckInInput:
        if (self.code is None) == (self.guest_id is None):
            raise field_problem("code", "give either the pass's code or a guest_id, not both or neither")
        return self


class PartyOut(Out):
    guest_id: uuid.UUID
    name: str
    response: str | None
    plus_ones_coming: int
    plus_ones_allowed: int
    plus_one_names: list[str]
    inside: int = Field(description="How many of the party are in: the guest and their plus-ones.")
    checked_in_at: Moment | None
    checked_in_by: str
    warnings: list[str]


class CountsOut(Out):
    checked_in: int
    expected: int


class CheckInAnswer(Out):
    """A check-in's answer. Refusals carry the same fields inside the house's
    error body (``party`` when a guest was found, ``counts``)."""

    outcome: str
    message: str
    scan_id: str
    admitted: int
    party: PartyOut | None
    counts: CountsOut


class UndoAnswer(Out):
    outcome: str
    message: str
    undone: int


class DoorSearch(Query):
    q: Annotated[str, Trimmed(100), StringConstraints(min_length=2, max_length=100)]


class FoundGuest(Out):
    guest_id: uuid.UUID
    name: str
    response: str | None
    plus_ones_coming: int
    inside: int
    open_flags: int


class DoorSearchAnswer(Out):
    guests: list[FoundGuest]


class DecodedFrame(Out):
    code: str | None = Field(description="The QR code's content, or null when the frame held none.")
