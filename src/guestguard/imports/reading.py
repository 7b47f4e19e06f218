"""From a file's bytes to guests' raw values: which importer reads it, where
the header is, which column holds what (guessed, or as the host chose), and
each data row's cells for the guest fields, with the problems a cell has
before any guest rule looks at it (too long, a formula, a ragged row).

Nothing here touches the database; ``services`` checks each row by the rules
of adding a guest by hand."""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from guestguard.errors import Refusal
from guestguard.plugins import ReadOptions, UnreadableFile, binary_kind

HEAD_BYTES = 4096
HEADER_SCAN = 10  # rows searched for the header, below title rows

# Guest fields a column can fill, in the order the preview offers them.
FIELDS = {
    "name": "Name", "first_name": "First name", "last_name": "Last name", "email": "Email",
    "phone": "Phone", "plus_ones": "Plus-ones", "group": "Group", "tags": "Tags", "notes": "Notes",
}
IGNORE = ""

# Header spellings, reduced by ``header_key`` (letters, digits and "+" only).
# The seed's variants, what people type, and what Luma's and Eventbrite's
# guest-list exports call their columns.
ALIASES = {
    "name": ("name", "names", "guestname", "guest", "fullname", "attendeename", "attendee", "contactname",
             "displayname", "nameofguest", "invitee", "inviteename"),
    "first_name": ("firstname", "first", "givenname", "forename", "attendeefirstname"),
    "last_name": ("lastname", "last", "surname", "familyname", "attendeelastname"),
    "email": ("email", "emails", "emailaddress", "mail", "emailaddr", "attendeeemail", "contactemail"),
    "phone": ("phone", "telephone", "tel", "mobile", "mobilephone", "cell", "cellphone", "phonenumber",
              "mobilenumber", "cellnumber", "telephonenumber", "whatsapp", "attendeephone"),
    "plus_ones": ("plusones", "plusone", "+1", "+1s", "plus1", "plus1s", "guests", "extraguests",
                  "additionalguests", "plusonesallowed"),
    "group": ("group", "groupname", "table", "household", "party", "family", "category"),
    "tags": ("tags", "tag", "labels", "label"),
    "notes": ("notes", "note", "comments", "comment", "remarks", "dietary", "dietaryrequirements",
              "allergies"),
}
BY_ALIAS = {alias: target for target, aliases in ALIASES.items() for alias in aliases}

# A cell a spreadsheet would run as a formula; an apostrophe before it (how
# our export neutralizes one) keeps it as text.
FORMULA = re.compile(r"=\s*[A-Za-z_(@+\-\d]")
NEUTRALIZED = re.compile(r"'[=+\-@\t\r]")


class ImportError_(Refusal):  # noqa: N801 - ImportError is Python's
    """The file cannot be imported as it is: a 4xx naming the problem."""


def refuse(status: int, code: str, message: str, **extra: Any) -> ImportError_:
    return ImportError_(status, code, message, **extra)


# --- choosing the importer -----------------------------------------------------------


def choose_importer(importers: Sequence[Any], file_name: str, data: bytes):
    """The importer for this file: one that recognizes its first bytes,
    preferring one that claims its extension. A 422 naming what the file is
    otherwise."""
    head = data[:HEAD_BYTES]
    extension = PurePosixPath(file_name.lower()).suffix
    willing = [importer for importer in importers if importer.recognizes(head)]
    for importer in willing:
        if extension in importer.extensions:
            return importer
    if willing:
        return willing[0]
    kinds = ", ".join(sorted({e for importer in importers for e in importer.extensions}))
    what = binary_kind(head)
    named = f"{file_name} is {what}" if what else f"{file_name} is not a spreadsheet we can read"
    raise refuse(422, "unsupported_format", f"{named}, not a guest list. Upload a spreadsheet ({kinds}).")


# --- headers and mapping ----------------------------------------------------------


def clean_header(text: str) -> str:
    """A header as shown: no byte-order mark, no non-breaking or repeated spaces."""
    text = text.replace("\ufeff", "").replace("\xa0", " ").replace("\u202f", " ")
    return " ".join(text.split())


def header_key(text: str) -> str:
    return re.sub(r"[^0-9a-z+]", "", clean_header(text).casefold())


def letter(index: int) -> str:
    """A column's letter as spreadsheets name it: 0 -> A, 26 -> AA."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


@dataclass
class Column:
    index: int
    header: str
    field: str
    guessed: bool

    @property
    def letter(self) -> str:
        return letter(self.index)


def guess_mapping(headers: Sequence[str]) -> list[str]:
    """Each column's field by its header; each field once (the first column
    naming it); first and last names only when no column holds the full name."""
    taken: set[str] = set()
    mapping = []
    for header in headers:
        target = BY_ALIAS.get(header_key(header), IGNORE)
        if target in taken:
            target = IGNORE
        taken.add(target)
        mapping.append(target)
    if "name" in taken:
        mapping = [IGNORE if target in ("first_name", "last_name") else target for target in mapping]
    return mapping


def header_row(rows: Sequence[list[str]]) -> int:
    """Which of the first rows is the header: the one naming the most known
    columns; without any, the first with two cells or more (title rows above
    it have one)."""
    best, best_count = None, 0
    for index, row in enumerate(rows):
        count = sum(1 for cell in row if header_key(cell) in BY_ALIAS)
        if count > best_count:
            best, best_count = index, count
    if best is not None:
        return best
    return next((index for index, row in enumerate(rows) if sum(1 for c in row if c.strip()) >= 2),
                next((index for index, row in enumerate(rows) if any(c.strip() for c in row)), 0))


def resolve_mapping(headers: Sequence[str], chosen: dict[str, str] | None) -> list[Column]:
    """The columns with their fields: guesses, overridden by the host's
    choices (keyed by column letter, 1-based number or header text)."""
    guessed = guess_mapping(headers)
    columns = [Column(index, clean_header(header), guessed[index], guessed[index] != IGNORE)
               for index, header in enumerate(headers)]
    for key, target in (chosen or {}).items():
        column = _column_for(columns, key)
        if target not in FIELDS and target != IGNORE:
            raise refuse(422, "validation_failed", f"mapping: {target!r} is not a guest field.",
                         fields={"mapping": f"{key}: must be one of {', '.join(FIELDS)} or empty"})
        column.field, column.guessed = target, False
    seen: dict[str, Column] = {}
    for column in columns:
        if column.field == IGNORE:
            continue
        if column.field in seen:
            first = seen[column.field]
            raise refuse(422, "validation_failed",
                         f"Columns {first.letter} and {column.letter} are both mapped to {FIELDS[column.field]}; "
                         "choose one.", fields={"mapping": f"{FIELDS[column.field]} is chosen twice"})
        seen[column.field] = column
    return columns


def _column_for(columns: Sequence[Column], key: str) -> Column:
    text = str(key).strip()
    for column in columns:
        if text.upper() == column.letter or text == str(column.index + 1):
            return column
    for column in columns:
        if header_key(text) and header_key(text) == header_key(column.header):
            return column
    raise refuse(422, "validation_failed", f"mapping names a column the file does not have: {text[:100]!r}.",
                 fields={"mapping": f"{text[:100]} is not a column of the file"})


# --- rows -----------------------------------------------------------------------------


@dataclass
class RawRow:
    """One data row: its number as the spreadsheet shows it, the guest's raw
    values, the cells as read (for the preview and the error file) and the
    problems found in its cells."""

    number: int
    values: dict[str, Any]
    cells: list[str]
    problems: dict[str, str] = field(default_factory=dict)


@dataclass
class Sheet:
    """A file read: what was detected, the header, the columns and the rows."""

    format: str
    encoding: str
    delimiter: str
    sheet: str
    header_number: int
    headers: list[str]
    columns: list[Column]
    rows: list[RawRow]


@dataclass(frozen=True)
class Limits:
    max_rows: int
    max_columns: int
    max_cell_chars: int
    max_unpacked_bytes: int

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(settings["imports.max_rows"], settings["imports.max_columns"],
                   settings["imports.max_cell_chars"], settings["imports.max_unpacked_bytes"])


def _cell(raw: str) -> str:
    text = raw.strip()
    return text[1:] if NEUTRALIZED.match(text) else text


def _whole_number(text: str) -> int | str:
    compact = text.strip()
    compact = compact.removesuffix(".0")
    return int(compact) if compact.isascii() and compact.isdigit() else text


def row_values(columns: Sequence[Column], cells: Sequence[str], width: int, limits: Limits) -> tuple[
        dict[str, Any], dict[str, str]]:
    """The guest's raw values from a row's cells, and the problems of its cells."""
    problems: dict[str, str] = {}
    extra = [cell for cell in cells[width:] if cell.strip()]
    if extra:
        problems["row"] = f"has {len(cells)} cells but the header has {width}; the extra cells were not read"
    found: dict[str, str] = {}
    for column in columns:
        if column.field == IGNORE:
            continue
        raw = cells[column.index] if column.index < len(cells) else ""
        label = FIELDS[column.field]
        if len(raw) > limits.max_cell_chars:
            problems[column.field] = f"is longer than {limits.max_cell_chars:,} characters"
            continue
        if FORMULA.match(raw.strip()):
            problems[column.field] = (f"holds a spreadsheet formula ({raw.strip()[:30]}); {label} must be its "
                                      "value (start it with an apostrophe to keep the text)")
            continue
        found[column.field] = _cell(raw)
    values: dict[str, Any] = {}
    name = found.get("name") or " ".join(part for part in (found.get("first_name"), found.get("last_name")) if part)
    values["name"] = name
    for target in ("email", "phone", "group", "notes"):
        if found.get(target):
            values[target] = found[target]
    if found.get("plus_ones"):
        values["plus_ones_allowed"] = _whole_number(found["plus_ones"])
    if found.get("tags"):
        values["tags"] = [tag.strip() for tag in re.split(r"[,;]", found["tags"]) if tag.strip()]
    return values, problems


def read_sheet(importer, data: bytes, *, encoding: str | None, delimiter: str | None,
               mapping: dict[str, str] | None, limits: Limits) -> Sheet:
    """Read the file: the header, the columns and every data row, streamed
    from the importer and stopped at the first row over ``max_rows``."""
    options = ReadOptions(encoding=encoding, delimiter=delimiter, max_cell_chars=limits.max_cell_chars,
                          max_columns=limits.max_columns, max_unpacked_bytes=limits.max_unpacked_bytes)
    try:
        table = importer.read(data, options)
        rows: Iterator[list[str]] = table.rows
        head: list[list[str]] = []
        for row in rows:
            head.append(row)
            if len(head) >= HEADER_SCAN:
                break
        if not any(any(cell.strip() for cell in row) for row in head):
            raise refuse(422, "empty_file", "The file is empty: there is no header and no guest in it.")
        at = header_row(head)
        headers = list(head[at])
        while headers and not headers[-1].strip():
            headers.pop()
        _check_width(len(headers), at + 1, limits)
        columns = resolve_mapping(headers, mapping)
        parsed: list[RawRow] = []
        number = at + 1
        for cells in _chain(head[at + 1:], rows):
            number += 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(parsed) >= limits.max_rows:
                raise refuse(422, "too_many_rows", f"The file has more than {limits.max_rows:,} guest rows "
                             f"(row {number} is one too many); split it into smaller files.",
                             limit=limits.max_rows, row=number)
            _check_width(len(cells), number, limits)
            values, problems = row_values(columns, cells, len(headers), limits)
            parsed.append(RawRow(number, values, list(cells[:len(headers)]), problems))
    except UnreadableFile as exc:
        where = {"row": exc.row} if exc.row else {}
        raise refuse(422, exc.code, exc.message, **where) from None
    if not parsed:
        raise refuse(422, "no_rows", f"The file has a header (row {at + 1}) but no guest rows below it.",
                     row=at + 1)
    return Sheet(importer.name, table.encoding, table.delimiter, table.sheet, at + 1, headers, columns, parsed)


def _check_width(width: int, number: int, limits: Limits) -> None:
    if width > limits.max_columns:
        raise refuse(422, "too_many_columns", f"Row {number} has more than {limits.max_columns} columns; a guest "
                     f"list may have at most {limits.max_columns}.", limit=limits.max_columns, row=number)


def _chain(first: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield from first
    yield from rest
