"""The activity API's input, query strings and answers."""
from __future__ import annotations

import uuid
from typing import Any

from pydantic import ConfigDict

from guestguard.contract import Moment, Out
from guestguard.events.schemas import DEFAULT_PAGE_SIZE, Cursor, Limit
from guestguard.pagination import ASCENDING, DESCENDING
from guestguard.validation import Input, OneOf, Query, WholeNumber

MAX_LOOKBACK_SECONDS = 60


class ActivityQuery(Query):
    order: OneOf(ASCENDING, DESCENDING) = ASCENDING
    after: Cursor = None
    lookback: WholeNumber(0, MAX_LOOKBACK_SECONDS, "must be a whole number of seconds from 0 to "
                                                   f"{MAX_LOOKBACK_SECONDS}") = 0
    limit: Limit = DEFAULT_PAGE_SIZE


class TicketInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"event_id": "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"}]})

    event_id: uuid.UUID


class StreamQuery(Query):
    ticket: str | None = None
    # Where to resume (the ``Last-Event-ID`` header wins).
    last_event_id: str | None = None


class ActivityItemOut(Out):
    """``id`` is the item's feed cursor (and its Server-Sent Events id)."""

    id: str
    kind: str
    at: Moment
    guest_id: uuid.UUID | None
    summary: str
    data: dict[str, Any]


class ActivityPage(Out):
    items: list[ActivityItemOut]
    next: str | None
    more: bool


class StreamTicketOut(Out):
    ticket: str
    expires_at: Moment
    event_id: uuid.UUID
    stream_url: str
