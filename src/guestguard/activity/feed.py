"""An event's activity feed: opens, answers, flags and deliveries, in order.

Each item is written in the transaction of the fact it reports and sent to
the event's live streams once that commits. The feed is read with keyset
pagination on (at, id); the cursor of an item is also its Server-Sent
Events id, so a stream resumes exactly where the feed would continue.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import or_, select

from guestguard.activity.live import publish_after_commit
from guestguard.activity.models import Activity
from guestguard.activity.schemas import MAX_LOOKBACK_SECONDS, ActivityItemOut  # noqa: F401
from guestguard.db import utcnow
from guestguard.events.models import is_listed
from guestguard.pagination import ASCENDING, DESCENDING, ID, TIME, Key, Keyset

DEFAULT_LIMIT = 50
# An item's time is set when it is written, not when its transaction
# commits: one from a slow transaction can appear behind an item a reader
# already passed. Readers that follow the feed (the stream's replay, the
# page's polling) look this far back and drop the ids they have.
LOOKBACK_SECONDS = 10


OLDEST_FIRST = Keyset(Key(Activity.at, TIME), Key(Activity.id, ID))
NEWEST_FIRST = Keyset(Key(Activity.at, TIME), Key(Activity.id, ID), order=DESCENDING)


def cursor_of(item: Activity) -> str:
    return OLDEST_FIRST.cursor_of(item)


def now_cursor() -> str:
    """A cursor before anything recorded from now on: a page showing no item
    yet hands it to its stream, so nothing between render and connect is lost."""
    return OLDEST_FIRST.encode(utcnow(), uuid.UUID(int=0))


def parse_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """InvalidCursor (400 invalid_cursor) for anything but a cursor we made."""
    at, item_id = OLDEST_FIRST.decode(cursor)
    return at, item_id


def item_out(item: Activity) -> ActivityItemOut:
    """The item as the API, the live stream and the page show it."""
    return ActivityItemOut.of(item, id=cursor_of(item))


def add(ctx, *, workspace_id: uuid.UUID, event_id: uuid.UUID, guest_id: uuid.UUID | None,
        kind: str, summary: str, data: dict[str, Any] | None = None) -> Activity:
    """Record one item and send it to the live streams after commit."""
    # The id is given here, not at the flush: the row is written with the
    # transaction's next flush, so a worker adding many items writes them
    # together.
    item = Activity(id=uuid.uuid4(), workspace_id=workspace_id, event_id=event_id, guest_id=guest_id, kind=kind,
                    summary=summary[:500], data=dict(data or {}), at=utcnow())
    ctx.db.add(item)
    publish_after_commit(ctx, event_id, item_out(item).model_dump(mode="json"))
    return item


def page(db, event_id: uuid.UUID, *, after: str | None = None, limit: int = DEFAULT_LIMIT,
         order: str = ASCENDING, lookback: int = 0) -> tuple[list[Activity], bool]:
    """Items past ``after`` in ``order`` (oldest first by default), and
    whether more follow; with ``lookback`` (ascending only), from that many
    seconds before ``after``. One query whatever the feed's size."""
    # Lines about a removed guest are hidden with them (and deleted by their purge).
    query = select(Activity).where(Activity.event_id == event_id,
                                   or_(Activity.guest_id.is_(None), is_listed(Activity.guest_id)))
    position = parse_cursor(after) if after else None
    if position is not None and lookback and order == ASCENDING:
        position = (position[0] - dt.timedelta(seconds=lookback), uuid.UUID(int=0))
    keyset = OLDEST_FIRST if order == ASCENDING else NEWEST_FIRST
    items, cursor = keyset.page(db, query, after=position, limit=limit)
    return items, cursor is not None


def latest(db, event_id: uuid.UUID, limit: int = 20) -> list[Activity]:
    """The newest items, newest first (the event page's first view)."""
    items, _ = page(db, event_id, limit=limit, order=DESCENDING)
    return items
