"""GuestGuard plugin: guest lists from Excel workbooks (.xlsx, .xlsm), and
the Excel export.

An .xlsx file is a zip archive of XML. Before anything reads one, the
archive's table of contents is checked: at most ``MAX_MEMBERS`` members,
their unpacked sizes adding up to at most ``ReadOptions.max_unpacked_bytes``
and no member expanding more than ``MAX_RATIO`` times, so a zip bomb is
refused from its directory without inflating a byte. The active worksheet
is then read by python-calamine (a Rust reader, several times faster than
openpyxl's read-only mode) with the values Excel last computed (a formula
gives its result, never its text). The sheet's cells are held in memory
while it is read: the directory check bounds them (the file itself is at
most ``imports.max_file_bytes``). The export is written with openpyxl."""
from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from guestguard.plugins import ReadOptions, Table, UnreadableFile, hookimpl

MAX_MEMBERS = 2000
MAX_RATIO = 200  # XML of a real sheet packs 5 to 20 times
WORKBOOK = "xl/workbook.xml"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# The tab Excel shows when the workbook opens: <workbookView activeTab="1"/>.
ACTIVE_TAB = re.compile(rb"<(?:\w+:)?workbookView\b[^>]*\bactiveTab=\"(\d{1,4})\"")


def check_archive(data: bytes, max_unpacked: int) -> int:
    """Refuse what is not a workbook, or would unpack to too much; the index
    of the active worksheet."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnreadableFile("The file is not a valid Excel workbook (its zip archive is damaged).") from None
    with archive:
        members = archive.infolist()
        names = {member.filename for member in members}
        if "content.xml" in names and "mimetype" in names:
            raise UnreadableFile("This is an OpenDocument spreadsheet (.ods): save it as .xlsx or .csv "
                                 "and upload it again.", code="unsupported_format")
        if WORKBOOK not in names:
            raise UnreadableFile("The zip archive is not an Excel workbook (it has no workbook inside).",
                                 code="unsupported_format")
        if len(members) > MAX_MEMBERS:
            raise UnreadableFile(f"The workbook holds {len(members):,} parts; at most {MAX_MEMBERS:,} are "
                                 "read.", code="zip_bomb")
        total = 0
        for member in members:
            total += member.file_size
            ratio = member.file_size / max(member.compress_size, 1)
            if total > max_unpacked or (member.file_size > 1024 * 1024 and ratio > MAX_RATIO):
                raise UnreadableFile(
                    f"The workbook would unpack to more than {max_unpacked // (1024 * 1024)} MB "
                    f"({member.filename} alone is {member.file_size:,} bytes packed into "
                    f"{member.compress_size:,}); it looks like a zip bomb and was not opened.",
                    code="zip_bomb")
        # Read once the sizes are known to be sane; the workbook part is small.
        found = ACTIVE_TAB.search(archive.read(WORKBOOK))
    return int(found.group(1)) if found else 0


def as_text(value: Any) -> str:
    """A cell as the host sees it in Excel: whole numbers without ".0"
    (phone numbers typed as numbers), dates as ISO dates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _rows(workbook, sheet, options: ReadOptions) -> Iterator[list[str]]:
    limit = options.max_cell_chars + 1
    width = options.max_columns + 1
    # calamine starts each row at the sheet's first used column: the columns
    # to its left come back as empty cells, so letters match Excel's.
    left = [""] * sheet.start[1] if sheet.height else []
    try:
        for row in sheet.iter_rows():
            cells = [as_text(value)[:limit] for value in (left + row if left else row)[:width]]
            while cells and cells[-1] == "":
                cells.pop()
            yield cells
    except Exception as exc:  # a hostile or damaged workbook fails in many ways inside the reader
        raise UnreadableFile(f"The worksheet cannot be read ({type(exc).__name__}).") from None
    finally:
        workbook.close()


class XlsxImporter:
    name = "xlsx"
    label = "Excel workbook"
    extensions = (".xlsx", ".xlsm")
    media_types = (XLSX, "application/vnd.ms-excel.sheet.macroEnabled.12")
    media_type = XLSX

    def recognizes(self, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04")

    def read(self, data: bytes, options: ReadOptions) -> Table:
        active = check_archive(data, options.max_unpacked_bytes)
        import python_calamine  # with the first workbook, not when the plugin loads

        try:
            workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        except Exception as exc:  # a damaged workbook: XML, zip and the reader's own errors alike
            raise UnreadableFile(f"The workbook cannot be opened ({type(exc).__name__}).") from None
        try:
            worksheets = [index for index, sheet in enumerate(workbook.sheets_metadata)
                          if sheet.typ == python_calamine.SheetTypeEnum.WorkSheet]
            if not worksheets:
                raise UnreadableFile("The workbook has no worksheet.")
            index = active if active in worksheets else worksheets[0]
            sheet = workbook.get_sheet_by_index(index)
        except UnreadableFile:
            workbook.close()
            raise
        except Exception as exc:
            workbook.close()
            raise UnreadableFile(f"The worksheet cannot be read ({type(exc).__name__}).") from None
        return Table(rows=_rows(workbook, sheet, options), sheet=sheet.name)

    def write(self, rows: Iterable[list[str]]) -> bytes:
        # Imported with the first export (7 MiB a web process need not hold).
        import openpyxl
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        workbook = openpyxl.Workbook(write_only=True)
        sheet = workbook.create_sheet("Guests")
        for row in rows:
            cells = []
            for value in row:
                # Control characters a worksheet cannot hold (a name pasted
                # with one) become U+FFFD rather than failing the export.
                cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
                cell.data_type = "s"  # text, always: never a formula
                cells.append(cell)
            sheet.append(cells)
        out = io.BytesIO()
        workbook.save(out)
        return out.getvalue()


@hookimpl
def register_importers(settings):
    return [XlsxImporter()]
