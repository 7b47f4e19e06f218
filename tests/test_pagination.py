"""Keyset pagination: the cursor codec and the page query every listing uses."""
import base64
import datetime as dt
import itertools
import json
import uuid

import pytest
from sqlalchemy import String, Uuid, create_engine, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from guestguard import pagination
from guestguard.db import UTCDateTime
from guestguard.pagination import ASCENDING, DESCENDING, ID, INT, TEXT, TIME, InvalidCursor, Key, Keyset
from guestguard.testing import create_team, session_bearer

UTC = dt.UTC


def raw_cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# --- the codec ------------------------------------------------------------------------


def test_a_cursor_carries_values_of_mixed_kinds():
    moment, row_id = dt.datetime(2030, 6, 21, 18, 0, 5, 123, tzinfo=UTC), uuid.uuid4()
    cursor = pagination.encode([moment, row_id, "Ada, \u00e9 \"quoted\"", -42], (TIME, ID, TEXT, INT))
    assert "=" not in cursor and cursor.isascii()
    assert pagination.decode(cursor, (TIME, ID, TEXT, INT)) == (moment, row_id, "Ada, \u00e9 \"quoted\"", -42)


def test_the_format_is_unchanged():
    """Cursors already handed out (and SSE ids held by browsers) still read."""
    row_id = uuid.uuid4()
    old = raw_cursor(["2030-06-21T18:00:00+00:00", str(row_id)])
    assert pagination.decode(old, (TIME, ID)) == (dt.datetime(2030, 6, 21, 18, tzinfo=UTC), row_id)
    assert pagination.encode([dt.datetime(2030, 6, 21, 18, tzinfo=UTC), row_id], (TIME, ID)) == old


@pytest.mark.parametrize("cursor", [
    "garbage", "", "W10", "eyJhIjoxfQ", "not-a-cursor!", "\u00e9\u00e9\u00e9\u00e9",
    raw_cursor(["x", 123]), raw_cursor(["2030-01-01T00:00:00+00:00", 5]), raw_cursor([None, None]),
    raw_cursor(["2030-01-01T00:00:00", str(uuid.uuid4())]),  # a time without its zone
    raw_cursor(["2030-01-01T00:00:00+00:00", "not-a-uuid"]),
    raw_cursor(["2030-01-01T00:00:00+00:00"]),
    raw_cursor([["2030-01-01T00:00:00+00:00"], [str(uuid.uuid4())]]),
    "W" * 5000,  # oversized
    base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode().rstrip("="),  # deeply nested
    base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).decode().rstrip("="),
])
def test_anything_but_our_cursors_is_invalid(cursor):
    with pytest.raises(InvalidCursor) as refused:
        pagination.decode(cursor, (TIME, ID))
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        400, "invalid_cursor", "The cursor is not valid: start again without it.")


def test_text_and_numbers_are_bounded():
    with pytest.raises(InvalidCursor):
        pagination.decode(raw_cursor(["x" * 301]), (TEXT,))
    assert pagination.decode(raw_cursor(["x" * 300]), (TEXT,)) == ("x" * 300,)
    for bad in ("a\x00b", "\ud800", "x\udfff"):  # what PostgreSQL cannot compare against
        with pytest.raises(InvalidCursor):
            pagination.decode(raw_cursor([bad]), (TEXT,))
    for bad in ("1.5", "1e3", "", "-", "9" * 21, "\u0661"):
        with pytest.raises(InvalidCursor):
            pagination.decode(raw_cursor([bad]), (INT,))


def test_our_own_mistakes_are_errors_not_refusals():
    with pytest.raises(ValueError, match="needs its zone"):
        pagination.encode([dt.datetime(2030, 1, 1)], (TIME,))  # naive
    with pytest.raises(ValueError, match="unknown cursor kind"):
        Key(String(), "colour")
    with pytest.raises(ValueError, match="at least one key"):
        Keyset()
    with pytest.raises(ValueError, match="order is"):
        Keyset(Key(String(), TEXT, name="name"), order="sideways")


# --- pages ------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    rank: Mapped[int]
    label: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


@pytest.fixture
def db():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        start = dt.datetime(2030, 1, 1, tzinfo=UTC)
        session.add_all(Item(id=uuid.uuid4(), rank=index % 3, label="ab"[index % 2],
                             at=start + dt.timedelta(minutes=index % 4)) for index in range(23))
        session.commit()
        yield session


def walk(db, keyset, limit, query=None):
    pages, cursor = [], None
    while True:
        rows, cursor = keyset.page(db, query if query is not None else select(Item), after=cursor, limit=limit)
        pages.append(rows)
        if cursor is None:
            return pages


@pytest.mark.parametrize("order", [ASCENDING, DESCENDING])
def test_pages_follow_any_number_of_keys_of_mixed_kinds(db, order):
    keyset = Keyset(Key(Item.rank, INT), Key(Item.label, TEXT), Key(Item.at, TIME), Key(Item.id, ID), order=order)
    pages = walk(db, keyset, 4)
    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]
    seen = [(item.rank, item.label, item.at, item.id) for item in itertools.chain(*pages)]
    assert seen == sorted(seen, reverse=order == DESCENDING) and len(set(seen)) == 23


def test_a_page_that_ends_exactly_has_no_next(db):
    keyset = Keyset(Key(Item.at, TIME), Key(Item.id, ID))
    rows, cursor = keyset.page(db, select(Item), after=None, limit=23)
    assert len(rows) == 23 and cursor is None
    rows, cursor = keyset.page(db, select(Item), after=None, limit=22)
    assert len(rows) == 22 and cursor == keyset.cursor_of(rows[-1])


def test_filters_of_the_query_stay(db):
    keyset = Keyset(Key(Item.label, TEXT), Key(Item.id, ID))
    pages = walk(db, keyset, 5, select(Item).where(Item.rank == 1))
    assert all(item.rank == 1 for item in itertools.chain(*pages))
    assert sum(map(len, pages)) == 8


def test_a_select_of_columns_pages_rows(db):
    keyset = Keyset(Key(Item.at, TIME), Key(Item.id, ID))
    rows, cursor = keyset.page(db, select(Item.id, Item.at), after=None, limit=5)
    assert len(rows) == 5 and isinstance(rows[0].id, uuid.UUID)
    rest, _ = keyset.page(db, select(Item.id, Item.at), after=cursor, limit=50)
    assert len(rest) == 18 and rows[-1].id not in {row.id for row in rest}


def test_decoded_positions_are_accepted(db):
    """What the feed's lookback uses: a position moved before the cursor."""
    keyset = Keyset(Key(Item.at, TIME), Key(Item.id, ID))
    rows, _ = keyset.page(db, select(Item), after=(dt.datetime(2030, 1, 1, 0, 2, tzinfo=UTC), uuid.UUID(int=0)),
                          limit=50)
    assert {item.at.minute for item in rows} == {2, 3}


def test_the_where_clause_is_one_row_comparison():
    """An index condition on PostgreSQL (an OR of comparisons is only a filter)."""
    keyset = Keyset(Key(Item.rank, INT), Key(Item.id, ID), order=DESCENDING)
    query = keyset.after(select(Item), (1, uuid.UUID(int=5)))
    sql = str(query.compile(dialect=postgresql.dialect()))
    assert "WHERE (items.rank, items.id) < (%(param_1)s::INTEGER, %(param_2)s::UUID)" in sql
    assert "ORDER BY items.rank DESC, items.id DESC" in sql
    assert " OR " not in sql


# --- through the app --------------------------------------------------------------------


def test_every_listing_refuses_odd_cursors_with_a_400(app, run_in_request):
    workspace_id = run_in_request(create_team, app.app.registry)
    ada = session_bearer(app.app.registry, "ada@example.com")
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Gala",
                                             "starts_at": "2030-06-21T19:00:00", "timezone": "UTC"},
                          headers=ada).json["event"]
    base = f"/api/v1/events/{event['id']}"
    nested = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode().rstrip("=")
    for url in ("/api/v1/events", f"{base}/guests", f"{base}/flags", f"{base}/activity",
                f"{base}/activity?order=desc&"):
        for cursor in ("garbage", "W" * 5000, nested):
            joiner = "" if url.endswith("&") else "?"
            body = app.get(f"{url}{joiner}after={cursor}", headers=ada, status=400).json
            assert body["error"] == {"code": "invalid_cursor",
                                     "message": "The cursor is not valid: start again without it."}, url
