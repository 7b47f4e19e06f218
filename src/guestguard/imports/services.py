"""Guest lists from spreadsheets: preview, import, undo, export.

- **Preview** reads the file (``reading``), checks every row by the rules of
  adding a guest by hand (``events.services.check_guest``: one code path),
  finds duplicates within the file and against the event (normalized email,
  E.164 phone), and records a ``guest_imports`` row pinning the file and how
  it is read. It writes nothing to the guest list.
- **Import** (of a preview's id, or of a file sent again) takes the rows
  its preview checked (kept with the pinned file, as long as the rules they
  were checked by still hold; else it reads and checks the file again), finds
  duplicates against the list as it is now under the event's import lock,
  then adds the valid rows (and updates duplicates when asked) in the
  request's one transaction: all of them or none. A file already imported into the event, or a preview
  already imported, is refused (409 ``already_imported``), so a double
  submit adds each guest once.
- **Undo** removes the guests an import added and restores those it updated,
  while none of them has been invited.
- **Export** writes the guest list through an importer that can write its
  format, every cell a spreadsheet would run as a formula neutralized."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select

from guestguard import timefmt
from guestguard.audit.services import record
from guestguard.db import lock_name, lock_row, utcnow
from guestguard.events import services as events
from guestguard.events.deliveries import invitation_deliveries
from guestguard.events.models import Event, Guest, InvitationLink, Rsvp
from guestguard.imports.models import IMPORTED, PREVIEWED, UNDONE, GuestImport
from guestguard.imports.reading import FIELDS, Column, ImportError_, Limits, Sheet, choose_importer, read_sheet, refuse

OK, DUPLICATE, ERROR = "ok", "duplicate", "error"
SKIP, UPDATE = "skip", "update"
# What an update may change on a guest already on the list.
UPDATABLE = ("name", "email", "phone", "plus_ones_allowed", "group_name", "tags", "notes")
EXPORT_HEADERS = ("Name", "Email", "Phone", "Plus-ones", "Group", "Tags", "Notes", "Response",
                  "Plus-ones coming", "Dietary", "Invited at", "Opened at", "Delivery")
TEMPLATE_ROWS = (
    ("Name", "Email", "Phone", "Plus-ones", "Group", "Tags", "Notes"),
    ("Grace Hopper", "grace@example.com", "+44 20 7946 0958", "1", "Family", "vip", "Vegetarian"),
    ("Alan Turing", "", "+1 202 555 0143", "0", "Colleagues", "", "Phone only is fine"),
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


@dataclass(frozen=True)
class Choices:
    """How the host asked the file to be read."""

    mapping: dict[str, str] | None = None
    encoding: str | None = None
    delimiter: str | None = None
    duplicates: str = SKIP


@dataclass
class CheckedRow:
    number: int
    status: str
    values: dict[str, Any]
    cells: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    duplicate_of: dict[str, Any] | None = None
    stored: dict[str, Any] = field(default_factory=dict)
    existing: Guest | None = None

    @property
    def reason(self) -> str:
        return "; ".join(worded(name, words) for name, words in self.errors.items())


# A row's fields as the host reads them (the stored names of the guest's fields).
LABELS = {**FIELDS, "plus_ones_allowed": "Plus-ones", "row": "Row"}


def worded(name: str, words: str) -> str:
    """"Name is required", "Email: The part after the @-sign is not valid."."""
    label = LABELS.get(name, name)
    return f"{label} {words}" if words[:1].islower() else f"{label}: {words}"


@dataclass
class Checked:
    """A file read and every row checked: what the preview shows and the
    import does."""

    sheet: Sheet
    rows: list[CheckedRow]
    duplicates: str

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def to_add(self) -> list[CheckedRow]:
        return [row for row in self.rows if row.status == OK]

    @property
    def to_update(self) -> list[CheckedRow]:
        if self.duplicates != UPDATE:
            return []
        return [row for row in self.rows if row.status == DUPLICATE and row.existing is not None]

    @property
    def to_skip(self) -> int:
        return self.count(DUPLICATE) - len(self.to_update)


def _asked_choices(imp: GuestImport, pinned: Choices) -> Choices:
    """The choices the preview was asked with (what its kept checks answer),
    with the duplicates mode pinned."""
    asked = (imp.checks or {}).get("asked") or {}
    return Choices(mapping=asked.get("mapping"), encoding=asked.get("encoding"), delimiter=asked.get("delimiter"),
                   duplicates=pinned.duplicates)


def _choices_of(imp: GuestImport) -> Choices:
    return Choices(mapping={str(index + 1): target for index, target in enumerate(imp.mapping)},
                   encoding=imp.encoding, delimiter=imp.delimiter, duplicates=imp.duplicates)


def check_file(ctx, event: Event, upload: Upload, choices: Choices) -> Checked:
    """Read the file and check every row (nothing is written)."""
    limit = ctx.settings["imports.max_file_bytes"]
    if len(upload.data) > limit:
        raise refuse(413, "too_large", f"{upload.name} is {len(upload.data):,} bytes; a guest list may be at "
                     f"most {limit:,} bytes (1 MB). Nothing was imported.", limit=limit)
    if not upload.data:
        raise refuse(422, "empty_file", f"{upload.name} is empty: there is no header and no guest in it.")
    importer = choose_importer(ctx.registry["imports.importers"], upload.name, upload.data)
    sheet = read_sheet(importer, upload.data, encoding=choices.encoding, delimiter=choices.delimiter,
                       mapping=choices.mapping, limits=Limits.of(ctx.settings))
    rows = []
    for raw in sheet.rows:
        stored, problems = events.check_guest(ctx, event, raw.values)
        problems = {**raw.problems, **problems}
        if "name" in problems and not any(column.field in ("name", "first_name", "last_name")
                                          for column in sheet.columns):
            problems["name"] = "is required: choose the column that holds names"
        rows.append(CheckedRow(raw.number, ERROR if problems else OK, raw.values, raw.cells, problems,
                               stored=stored))
    _find_duplicates(ctx.db, event, rows)
    return Checked(sheet, rows, choices.duplicates)


# What a kept check is only good for: the same version of this format and
# of the rules (a change to either makes the import check the file again).
CHECKS_VERSION = 1


def rules_of(ctx, event: Event) -> dict[str, Any]:
    """What, besides a row's cells, the guest rules read: a kept check of the
    rows holds while these are the same."""
    return {"version": CHECKS_VERSION, "phone_region": events.phone_region(ctx, event),
            "default_plus_ones": event.default_plus_ones, "max_rows": ctx.settings["imports.max_rows"],
            "max_columns": ctx.settings["imports.max_columns"],
            "max_cell_chars": ctx.settings["imports.max_cell_chars"]}


def asked_of(choices: Choices) -> dict[str, Any]:
    """How the host asked the file to be read (what a kept check answers)."""
    return {"mapping": choices.mapping or None, "encoding": choices.encoding, "delimiter": choices.delimiter}


def keep_checks(ctx, event: Event, checked: Checked, choices: Choices) -> dict[str, Any]:
    """The checked rows as JSON, before duplicates are looked for (the list
    may change before the import): a valid row's stored values, an invalid
    row's cells, values and problems (for the error file)."""
    sheet = checked.sheet
    rows = []
    for row in checked.rows:
        if row.status == ERROR:
            rows.append({"n": row.number, "values": row.values, "cells": row.cells, "errors": row.errors})
        else:
            rows.append({"n": row.number, "stored": row.stored})
    return {"rules": rules_of(ctx, event), "asked": asked_of(choices),
            "sheet": {"format": sheet.format, "encoding": sheet.encoding, "delimiter": sheet.delimiter,
                      "sheet": sheet.sheet, "header_number": sheet.header_number, "headers": sheet.headers,
                      "columns": [[c.index, c.header, c.field, c.guessed] for c in sheet.columns]},
            "rows": rows}


def kept_checks(ctx, event: Event, kept: dict[str, Any] | None, choices: Choices) -> Checked | None:
    """The rows a preview checked, with duplicates found against the list
    as it is now; None when there are none to use (dropped, or checked by
    other rules or for another reading of the file)."""
    if not kept or kept.get("rules") != rules_of(ctx, event) or kept.get("asked") != asked_of(choices):
        return None
    shape = kept["sheet"]
    sheet = Sheet(shape["format"], shape["encoding"], shape["delimiter"], shape["sheet"], shape["header_number"],
                  shape["headers"], [Column(*column) for column in shape["columns"]], [])
    rows = []
    for row in kept["rows"]:
        if "stored" in row:
            stored = row["stored"]
            rows.append(CheckedRow(row["n"], OK, {}, [], stored=stored))
        else:
            rows.append(CheckedRow(row["n"], ERROR, row["values"], row["cells"], row["errors"]))
    _find_duplicates(ctx.db, event, rows)
    return Checked(sheet, rows, choices.duplicates)


def previewed_checks(ctx, event: Event, sha256: str, choices: Choices) -> Checked | None:
    """The kept checks of the latest preview of this very file for the
    event, read as asked now; None when there is none."""
    for kept in ctx.db.scalars(
            select(GuestImport.checks).where(GuestImport.event_id == event.id, GuestImport.file_sha256 == sha256,
                                             GuestImport.status == PREVIEWED, GuestImport.checks.is_not(None))
            .order_by(GuestImport.created_at.desc()).limit(3)):
        checked = kept_checks(ctx, event, kept, choices)
        if checked is not None:
            return checked
    return None


def _find_duplicates(db, event: Event, rows: Sequence[CheckedRow]) -> None:
    """Mark rows whose email or phone is already on the list, or in an
    earlier row of the file."""
    on_list: dict[tuple[str, str], Guest] = {}
    for guest in db.scalars(select(Guest).where(Guest.event_id == event.id)):
        if guest.email:
            on_list[("email", guest.email)] = guest
        if guest.phone:
            on_list.setdefault(("phone", guest.phone), guest)
    in_file: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.status != OK:
            continue
        keys = [(kind, row.stored[kind]) for kind in ("email", "phone") if row.stored.get(kind)]
        existing = next((on_list[key] for key in keys if key in on_list), None)
        earlier = next(((key, in_file[key]) for key in keys if key in in_file), None)
        # A repeat within the file is left out whatever the mode: the
        # first row of a person is the one added or used for an update.
        if earlier is not None:
            row.status = DUPLICATE
            row.duplicate_of = {"row": earlier[1], "same": earlier[0][0]}
        elif existing is not None:
            row.status, row.existing = DUPLICATE, existing
            row.duplicate_of = {"guest_id": str(existing.id), "name": existing.name}
        for key in keys:
            in_file.setdefault(key, row.number)


def _import_lock(ctx, event: Event) -> None:
    """Imports into one event, and their undos, run one at a time."""
    lock_name(ctx.db, f"guest-import:{event.id}", GuestImport)


def preview(ctx, event: Event, upload: Upload, choices: Choices) -> tuple[GuestImport, Checked]:
    checked = check_file(ctx, event, upload, choices)
    imp = _record_of(ctx, event, upload, checked)
    imp.checks = keep_checks(ctx, event, checked, choices)
    ctx.db.add(imp)
    ctx.db.flush()
    return imp, checked


def _record_of(ctx, event: Event, upload: Upload, checked: Checked) -> GuestImport:
    sheet = checked.sheet
    return GuestImport(workspace_id=event.workspace_id, event_id=event.id, actor_id=ctx.actor_id,
                       status=PREVIEWED, file_name=upload.name[:255], file_size=len(upload.data),
                       file_sha256=hashlib.sha256(upload.data).hexdigest(), format=sheet.format,
                       encoding=sheet.encoding or None, delimiter=sheet.delimiter or None,
                       mapping=[column.field for column in sheet.columns], duplicates=checked.duplicates,
                       content=upload.data)


def earlier_import(db, event: Event, sha256: str) -> GuestImport | None:
    """The import of this very file into the event, unless undone."""
    return db.scalar(select(GuestImport).where(GuestImport.event_id == event.id, GuestImport.file_sha256 == sha256,
                                               GuestImport.status == IMPORTED).limit(1))


def find_import(db, event_id: uuid.UUID, import_id: uuid.UUID) -> GuestImport | None:
    return db.scalar(select(GuestImport).where(GuestImport.id == import_id, GuestImport.event_id == event_id))


class ImportedAlready(ImportError_):
    """A repeat: the preview, or this very file, was imported already."""

    def __init__(self, imp: GuestImport, timezone: str):
        when = timefmt.when(imp.imported_at, timezone) if imp.imported_at else "earlier"
        super().__init__(409, "already_imported",
                         f"{imp.file_name} was already imported into this event ({when}: {imp.added} added, "
                         f"{imp.updated} updated, {imp.skipped} skipped); nothing was imported again. Undo "
                         "that import first to import the file anew.", import_id=str(imp.id))
        self.imp = imp


def commit(ctx, event: Event, *, import_id: uuid.UUID | None = None, upload: Upload | None = None,
           choices: Choices | None = None) -> tuple[GuestImport, Checked]:
    """Import a preview (``import_id``) or a file; see the module's docstring.
    Raises ``ImportedAlready`` for a repeat."""
    _import_lock(ctx, event)
    if import_id is not None:
        imp = find_import(ctx.db, event.id, import_id)
        if imp is None:
            raise refuse(404, "not_found", "There is no preview with this import_id for this event.")
        lock_row(ctx.db, GuestImport, imp.id)
        ctx.db.refresh(imp)
        if imp.status != PREVIEWED:
            raise ImportedAlready(imp, event.timezone)
        if imp.content is None:
            raise refuse(422, "preview_expired", "This preview has expired; upload the file again.")
        upload = Upload(imp.file_name, imp.content)
        choices = _choices_of(imp)
        checked = (kept_checks(ctx, event, imp.checks, _asked_choices(imp, choices))
                   or check_file(ctx, event, upload, choices))
    elif upload is not None and choices is not None:
        checked = (previewed_checks(ctx, event, hashlib.sha256(upload.data).hexdigest(), choices)
                   or check_file(ctx, event, upload, choices))
        imp = None
    else:
        raise TypeError("commit() needs import_id, or upload and choices")
    sha = hashlib.sha256(upload.data).hexdigest()
    earlier = earlier_import(ctx.db, event, sha)
    if earlier is not None:
        raise ImportedAlready(earlier, event.timezone)
    if not checked.to_add and not checked.to_update and checked.count(ERROR):
        raise refuse(422, "nothing_to_import", f"No row of {upload.name} can be imported: "
                     f"{checked.count(ERROR)} rows have errors. Nothing was imported.",
                     errors=[{"row": row.number, "reason": row.reason} for row in checked.rows
                             if row.status == ERROR][:100])
    if imp is None:
        imp = _record_of(ctx, event, upload, checked)
        ctx.db.add(imp)
        ctx.db.flush()
    _apply(ctx, event, imp, checked)
    return imp, checked


def _apply(ctx, event: Event, imp: GuestImport, checked: Checked) -> None:
    added = events.store_guests(ctx, event, [row.stored for row in checked.to_add], import_id=imp.id)
    updates = []
    for row in checked.to_update:
        guest = row.existing
        before = {name: getattr(guest, name) for name in UPDATABLE}
        changes = {name: value for name, value in row.stored.items()
                   if name in UPDATABLE and value not in (None, "", []) and value != before[name]}
        if "email" in changes and events.guests_with_emails(ctx.db, event.id, [changes["email"]]):
            changes.pop("email")  # another guest has it: keep the list's unique emails
        for name, value in changes.items():
            setattr(guest, name, value)
        guest.plus_ones_coming = min(guest.plus_ones_coming, guest.plus_ones_allowed)
        if changes:
            updates.append({"guest_id": str(guest.id), "before": {name: before[name] for name in changes}})
    imp.status, imp.imported_at = IMPORTED, utcnow()
    imp.added, imp.updated = len(added), len(updates)
    imp.skipped = checked.count(DUPLICATE) - len(updates)
    imp.errors = checked.count(ERROR)
    imp.updates = updates
    imp.actor_id = imp.actor_id or ctx.actor_id
    ctx.db.flush()
    counts = {"added": imp.added, "updated": imp.updated, "skipped": imp.skipped, "errors": imp.errors}
    record(ctx, "guests.imported", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="guest_import", target_id=imp.id, event_id=str(event.id), file_name=imp.file_name,
           **counts)
    ctx.emit("guests.imported", {"event_id": str(event.id), "import_id": str(imp.id), **counts},
             event.workspace_id)


def undo(ctx, event: Event, imp: GuestImport) -> None:
    """Remove the guests the import added and restore those it updated;
    409 once any of them has been invited, or when it was undone already."""
    _import_lock(ctx, event)
    lock_row(ctx.db, GuestImport, imp.id)
    ctx.db.refresh(imp)
    if imp.status != IMPORTED:
        raise refuse(409, "not_undoable", "This import was already undone." if imp.status == UNDONE
                     else "This is a preview: nothing was imported, so there is nothing to undo.")
    updated_ids = [uuid.UUID(change["guest_id"]) for change in imp.updates]
    invited = ctx.db.scalar(select(func.count(Guest.id)).where(
        Guest.event_id == event.id, (Guest.import_id == imp.id) | Guest.id.in_(updated_ids),
        Guest.invited_at.is_not(None) | Guest.id.in_(select(InvitationLink.guest_id).where(
            InvitationLink.event_id == event.id)))) or 0
    if invited:
        raise refuse(409, "already_invited", f"{invited} guest{'s' if invited != 1 else ''} of this import "
                     f"{'have' if invited != 1 else 'has'} been invited, so it can no longer be undone in one "
                     "click; remove guests one by one instead.", invited=invited)
    removed = ctx.db.execute(delete(Guest).where(Guest.import_id == imp.id, Guest.event_id == event.id)).rowcount
    for change in imp.updates:
        guest = events.find_guest(ctx.db, event.id, uuid.UUID(change["guest_id"]))
        if guest is not None:
            for name, value in change["before"].items():
                setattr(guest, name, value)
    imp.status, imp.undone_at = UNDONE, utcnow()
    record(ctx, "guests.import_undone", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="guest_import", target_id=imp.id, event_id=str(event.id), removed=removed,
           restored=len(imp.updates))
    ctx.emit("guests.import_undone", {"event_id": str(event.id), "import_id": str(imp.id), "removed": removed,
                                      "restored": len(imp.updates)}, event.workspace_id)


def recent_imports(db, event_id: uuid.UUID, limit: int = 5) -> list[GuestImport]:
    return list(db.scalars(select(GuestImport).where(GuestImport.event_id == event_id,
                                                     GuestImport.status != PREVIEWED)
                           .order_by(GuestImport.created_at.desc()).limit(limit)))


def purge(request) -> int:
    """Periodic task: drop files kept past ``imports.keep_hours`` and the
    previews never imported."""
    cutoff = utcnow() - dt.timedelta(hours=request.registry.settings["imports.keep_hours"])
    with request.tm:
        gone = request.db.execute(delete(GuestImport).where(GuestImport.status == PREVIEWED,
                                                            GuestImport.created_at < cutoff)).rowcount
        request.db.execute(GuestImport.__table__.update().where(
            GuestImport.content.is_not(None), GuestImport.created_at < cutoff).values(content=None, checks=None))
    return gone


# --- export -------------------------------------------------------------------


def neutralize(value: str) -> str:
    """A cell a spreadsheet would run as a formula, kept as text."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def export_rows(db, event: Event) -> Iterable[list[str]]:
    """The guest list as rows of text (the header first), by name."""
    latest = (select(Rsvp.guest_id, Rsvp.dietary, func.row_number().over(
        partition_by=Rsvp.guest_id, order_by=(Rsvp.created_at.desc(), Rsvp.id.desc())).label("n"))
        .where(Rsvp.event_id == event.id).subquery())
    dietary = dict(db.execute(select(latest.c.guest_id, latest.c.dietary).where(latest.c.n == 1)).all())
    listed = list(db.scalars(select(Guest).where(Guest.event_id == event.id).order_by(Guest.name, Guest.id)))
    delivery = invitation_deliveries(db, event.workspace_id, listed)
    yield list(EXPORT_HEADERS)
    for guest in listed:
        cells = [guest.name, guest.email or "", guest.phone or "", str(guest.plus_ones_allowed), guest.group_name,
                 ", ".join(guest.tags or []), guest.notes, guest.response or "",
                 str(guest.plus_ones_coming) if guest.response else "", dietary.get(guest.id, ""),
                 timefmt.when(guest.invited_at, event.timezone), timefmt.when(guest.opened_at, event.timezone),
                 delivery[guest.id].label]
        yield [neutralize(cell) for cell in cells]


def exporter(registry, name: str):
    """The importer that writes format ``name``."""
    found = registry["imports.writers"].get(name)
    if found is None:
        raise refuse(400, "bad_request", f"format must be one of {', '.join(sorted(registry['imports.writers']))}.")
    return found


def error_rows(checked: Checked) -> list[list[str]]:
    """The rows with errors as the file had them, and why, for the host to fix and import again."""
    sheet = checked.sheet
    out = [["Row", "Problem", *sheet.headers]]
    for row in checked.rows:
        if row.status == ERROR:
            out.append([str(row.number), row.reason, *[neutralize(cell) for cell in row.cells]])
    return out


def error_rows_of(ctx, event: Event, imp: GuestImport) -> list[list[str]]:
    if imp.content is None:
        raise refuse(410, "expired", "The file of this import is no longer kept; its error rows are gone.")
    choices = _choices_of(imp)
    checked = (kept_checks(ctx, event, imp.checks, _asked_choices(imp, choices))
               or check_file(ctx, event, Upload(imp.file_name, imp.content), choices))
    return error_rows(checked)
