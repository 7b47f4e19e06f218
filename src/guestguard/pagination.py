"""Keyset pagination: one cursor format and one way to read a page, for
every listing (events, guests, flags, the activity feed).

A page is ordered by its key columns (the last one unique, an id) and read
in one query: ``WHERE (k1, k2, ...) > (v1, v2, ...) ORDER BY k1, k2, ...
LIMIT n + 1`` (``<`` and ``DESC`` newest first). The row-value comparison
is an index condition on PostgreSQL, so a page deep in a long list costs what
the first one does; the equivalent ``OR`` of column comparisons is only a
filter, which reads the list from its start each time. Every key column
runs in the same direction (a row comparison cannot mix them).

A cursor is the last row's key values, as strings in a JSON list, base64url
without padding. Each value has a kind, checked when the cursor is read:

- ``time``: an ISO 8601 time with its offset,
- ``id``: a UUID,
- ``text``: at most ``MAX_TEXT`` characters, none of them a NUL or a lone
  surrogate (see ``inputs``),
- ``int``: a whole number in decimal.

Anything else (not base64, not a flat JSON list of strings, which is checked
before it is parsed, or longer than ``MAX_CURSOR`` characters) is
``InvalidCursor``: a 400 ``invalid_cursor``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, tuple_

from guestguard.errors import Refusal
from guestguard.inputs import text_problem

TIME, ID, TEXT, INT = "time", "id", "text", "int"
KINDS = (TIME, ID, TEXT, INT)
ASCENDING, DESCENDING = "asc", "desc"
MAX_TEXT = 300
MAX_INT_DIGITS = 20
# Larger than any cursor we make (a 200-character name written as JSON
# escapes, and an id); a longer one is refused before it is decoded.
MAX_CURSOR = 4096
INVALID = "The cursor is not valid: start again without it."
# What a cursor decodes to: a JSON list of strings, nothing nested.
_STRING = rb'"(?:[^"\\]|\\.)*"'
FLAT_LIST = re.compile(rb"\[\s*(?:" + _STRING + rb"\s*(?:,\s*" + _STRING + rb"\s*)*)?\]")


class InvalidCursor(Refusal):
    """A cursor we did not make."""

    def __init__(self) -> None:
        super().__init__(400, "invalid_cursor", INVALID)


# --- the cursor codec ---------------------------------------------------------------


def _text(value: Any, kind: str) -> str:
    if kind == TIME:
        if not isinstance(value, dt.datetime) or value.utcoffset() is None:
            raise ValueError(f"a cursor's time needs its zone: {value!r}")
        return value.isoformat()
    if kind == ID:
        return str(uuid.UUID(str(value)))
    if kind == INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"not a whole number: {value!r}")
        return str(value)
    if kind == TEXT:
        return str(value)
    raise ValueError(f"unknown cursor kind {kind!r}")


def encode(values: Sequence[Any], kinds: Sequence[str]) -> str:
    """A cursor carrying ``values`` (one per kind)."""
    if len(values) != len(kinds):
        raise ValueError("one value per kind")
    texts = [_text(value, kind) for value, kind in zip(values, kinds, strict=False)]
    return base64.urlsafe_b64encode(json.dumps(texts).encode()).decode().rstrip("=")


def _parse(value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        raise TypeError
    if kind == ID:
        return uuid.UUID(value)
    if kind == TIME:
        moment = dt.datetime.fromisoformat(value)
        if moment.utcoffset() is None:
            raise ValueError
        return moment
    if kind == INT:
        digits = value[1:] if value[:1] == "-" else value
        if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_INT_DIGITS:
            raise ValueError
        return int(value)
    if kind == TEXT:
        if len(value) > MAX_TEXT or text_problem(value):
            raise ValueError
        return value
    raise ValueError


def decode(cursor: str, kinds: Sequence[str]) -> tuple[Any, ...]:
    """The values a cursor carries, parsed by kind; InvalidCursor for anything
    but a cursor of this shape."""
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR or not cursor.isascii():
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode())
        if not FLAT_LIST.fullmatch(raw):  # so nothing nested is ever parsed
            raise ValueError
        values = json.loads(raw)
        if len(values) != len(kinds):
            raise ValueError
        return tuple(_parse(value, kind) for value, kind in zip(values, kinds, strict=False))
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError, binascii.Error):
        raise InvalidCursor() from None


# --- pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A key column and the kind of its values; ``name`` is the attribute
    holding the value on a result row (the column's key by default)."""
    column: Any
    kind: str
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown cursor kind {self.kind!r}")

    @property
    def attribute(self) -> str:
        return self.name or self.column.key


class Keyset:
    """The order of one listing: its key columns and direction."""

    def __init__(self, *keys: Key, order: str = ASCENDING):
        if not keys:
            raise ValueError("a keyset needs at least one key")
        if order not in (ASCENDING, DESCENDING):
            raise ValueError(f"order is {ASCENDING!r} or {DESCENDING!r}, not {order!r}")
        self.keys = keys
        self.order = order
        self.kinds = tuple(key.kind for key in keys)

    def values_of(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, key.attribute) for key in self.keys)

    def cursor_of(self, row: Any) -> str:
        """The cursor that continues after ``row``."""
        return encode(self.values_of(row), self.kinds)

    def encode(self, *values: Any) -> str:
        return encode(values, self.kinds)

    def decode(self, cursor: str) -> tuple[Any, ...]:
        return decode(cursor, self.kinds)

    def after(self, query: Select, position: Sequence[Any] | None) -> Select:
        """``query`` past ``position`` (decoded key values), in order."""
        columns = [key.column for key in self.keys]
        if position is not None:
            if len(position) != len(columns):
                raise ValueError("one value per key")
            row, value = tuple_(*columns), tuple_(*position)
            query = query.where(row > value if self.order == ASCENDING else row < value)
        if self.order == ASCENDING:
            return query.order_by(*columns)
        return query.order_by(*(column.desc() for column in columns))

    def page(self, db, query: Select, *, after: str | Sequence[Any] | None,
             limit: int) -> tuple[list[Any], str | None]:
        """Up to ``limit`` rows past ``after`` (a cursor, or key values
        already decoded) and the cursor of the next page, or None when none
        follows: one query, LIMIT n + 1. A select of one entity or column
        gives those (scalars); of several, rows."""
        if limit < 1:
            raise ValueError("limit is at least 1")
        position = self.decode(after) if isinstance(after, str) and after else (after or None)
        query = self.after(query, position).limit(limit + 1)
        rows = list(db.scalars(query)) if len(query.column_descriptions) == 1 else list(db.execute(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, self.cursor_of(rows[-1]) if more else None
