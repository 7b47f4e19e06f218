"""The Excel importer on its own: the zip directory checked first, cells as text."""
import datetime as dt
import io
import zipfile

import openpyxl
import pytest

from guestguard.plugins import Importer, ReadOptions, UnreadableFile
from guestguard_xlsx import XlsxImporter, as_text

IMPORTER = XlsxImporter()


def workbook(*rows):
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def zipped(**members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name.replace("__", "/"), content)
    return out.getvalue()


def test_it_reads_the_active_sheet_row_by_row_as_text():
    assert isinstance(IMPORTER, Importer)
    data = workbook(["Name", "Phone", "Plus-ones", "Since"], ["Ada", 447911123456, 2, dt.date(2030, 1, 2)],
                    ["Bob", None, 1.5, None])
    assert IMPORTER.recognizes(data[:4096])
    table = IMPORTER.read(data, ReadOptions())
    assert table.sheet == "Sheet"
    assert list(table.rows) == [["Name", "Phone", "Plus-ones", "Since"], ["Ada", "447911123456", "2", "2030-01-02"],
                                ["Bob", "", "1.5"]]


def test_a_formula_gives_its_computed_value_never_its_text():
    book = openpyxl.Workbook()
    book.active.append(["Name"])
    book.active.append(["=HYPERLINK(\"http://evil\")"])
    book.active.append(["Ada"])
    out = io.BytesIO()
    book.save(out)
    # openpyxl stores no computed value: the cell reads empty, not as the formula.
    assert list(IMPORTER.read(out.getvalue(), ReadOptions()).rows) == [["Name"], [], ["Ada"]]


def test_a_zip_bomb_is_refused_from_its_directory():
    bomb = zipped(**{"xl__workbook.xml": "<workbook/>", "xl__worksheets__sheet1.xml": b"\0" * (30 * 1024 * 1024)})
    with pytest.raises(UnreadableFile) as caught:
        IMPORTER.read(bomb, ReadOptions(max_unpacked_bytes=50 * 1024 * 1024))
    assert caught.value.code == "zip_bomb"
    with pytest.raises(UnreadableFile) as caught:
        IMPORTER.read(zipped(xl__workbook="x", **{f"m{n}": "" for n in range(2001)}), ReadOptions())
    assert caught.value.code in ("zip_bomb", "unsupported_format")


def test_other_zips_are_named():
    with pytest.raises(UnreadableFile, match="OpenDocument"):
        IMPORTER.read(zipped(mimetype="application/vnd.oasis.opendocument.spreadsheet", **{"content.xml": "<x/>"}),
                      ReadOptions())
    with pytest.raises(UnreadableFile, match="not an Excel workbook"):
        IMPORTER.read(zipped(**{"word__document.xml": "<x/>"}), ReadOptions())
    with pytest.raises(UnreadableFile, match="damaged"):
        IMPORTER.read(b"PK\x03\x04 broken", ReadOptions())


def test_cells_read_as_excel_shows_them():
    assert [as_text(v) for v in (None, True, 12.0, 12.5, "x", dt.datetime(2030, 1, 2, 18, 30))] == [  # noqa: DTZ001 - Excel times have no zone
        "", "TRUE", "12", "12.5", "x", "2030-01-02 18:30:00"]


def test_the_export_writes_text_cells_only():
    data = IMPORTER.write([["Name"], ["=1+1"]])
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet["A2"].value == "=1+1" and sheet["A2"].data_type == "s"


def test_the_export_keeps_a_name_with_a_control_character():
    data = IMPORTER.write([["Name"], ["Ada\x07 Lovelace"]])
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet["A2"].value == "Ada\ufffd Lovelace"


def test_a_damaged_workbook_is_named_not_a_crash():
    good = workbook(["Name"], ["Ada"])
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["xl/worksheets/sheet1.xml"] = b"<worksheet><sheetData><row><c t='s'><v>99</v></c>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(UnreadableFile, match="cannot be"):
        list(IMPORTER.read(out.getvalue(), ReadOptions()).rows)  # refused on opening or while reading


def test_the_active_tab_is_read_and_columns_keep_their_letters():
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["not the guest list"])
    guests = book.create_sheet("Guests")
    guests["C2"] = "Guest list"
    guests.append([None, "Name", "Email"])
    guests.append([None, "Ada", "ada@example.com"])
    book.active = 1
    out = io.BytesIO()
    book.save(out)
    table = IMPORTER.read(out.getvalue(), ReadOptions())
    assert table.sheet == "Guests"
    # The rows above and the column to the left of the first used cell are
    # there, empty: row and column numbers are the ones Excel shows.
    assert list(table.rows) == [[], ["", "", "Guest list"], ["", "Name", "Email"], ["", "Ada", "ada@example.com"]]


def test_an_empty_sheet_has_no_rows_and_long_rows_are_cut_after_the_column_limit():
    book = openpyxl.Workbook()
    out = io.BytesIO()
    book.save(out)
    assert list(IMPORTER.read(out.getvalue(), ReadOptions()).rows) == []
    wide = workbook([f"c{n}" for n in range(60)])
    assert list(IMPORTER.read(wide, ReadOptions(max_columns=50)).rows) == [[f"c{n}" for n in range(51)]]
