"""The CSV importer on its own: encodings, line ends, delimiters, quoting."""
import codecs

import pytest

from guestguard.plugins import Importer, ReadOptions, UnreadableFile
from guestguard_csv import CsvImporter, detect_encoding, sniff_delimiter

IMPORTER = CsvImporter()


def rows(data, **options):
    return list(IMPORTER.read(data, ReadOptions(**options)).rows)


def test_it_is_an_importer_that_knows_text_from_binaries():
    assert isinstance(IMPORTER, Importer)
    assert IMPORTER.recognizes(b"Name,Email\r\nAda,ada@example.com\r\n")
    assert IMPORTER.recognizes("Name\tEmail\n".encode("utf-16"))
    assert IMPORTER.recognizes("Name\tEmail\n".encode("utf-16-le"))  # no BOM: every other byte NUL
    for binary in (b"\x89PNG\r\n\x1a\n\0\0", b"PK\x03\x04rest", b"%PDF-1.7", b"\x00\x01\x02\x03" * 50):
        assert not IMPORTER.recognizes(binary)


@pytest.mark.parametrize("data, expected", [
    (codecs.BOM_UTF8 + "Zoë".encode(), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + "Zoë".encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + "Zoë".encode("utf-16-be"), "utf-16"),
    ("Zoë Ångström, François".encode(), "utf-8"),
    ("Name;Notes\nZoë Ångström;Crème brûlée\nFrançois Müller;Œuf\n".encode("cp1252"), "cp1252"),
])
def test_the_encoding_is_found(data, expected):
    assert detect_encoding(data) == expected


def test_a_file_mixing_encodings_names_its_lines():
    with pytest.raises(UnreadableFile) as caught:
        detect_encoding("Name\nZoë\nAda\n".encode() + "Müller\n".encode("cp1252"))
    assert caught.value.code == "mixed_encodings" and caught.value.row == 4
    assert "line 2 is written in UTF-8 but line 4 is not" in caught.value.message


def test_the_delimiter_is_sniffed_over_many_lines_below_a_title():
    title = "Guest list, summer gala\n"
    body = "".join(f"Guest {n};g{n}@example.com;Family, friends\n" for n in range(30))
    assert sniff_delimiter(title + "Name;Email;Group\n" + body) == ";"
    assert sniff_delimiter("Name|Email\nAda|a@example.com\n") == "|"
    assert sniff_delimiter("Name\tEmail\nAda\ta@example.com\n") == "\t"
    assert sniff_delimiter("Name\nAda\n") == ","


def test_mac_cr_line_ends_and_quoted_newlines():
    assert rows(b'Name,Notes\rAda,"two\rlines"\rBob,x\r') == [["Name", "Notes"], ["Ada", "two\rlines"], ["Bob", "x"]]


def test_quoting_problems_are_named_with_their_line():
    with pytest.raises(UnreadableFile) as caught:
        rows(b'Name,Email\nAda,ada@example.com\n"Bob,bob@example.com\n')
    assert caught.value.code == "unterminated_quote" and caught.value.row == 3


def test_a_long_cell_is_cut_just_past_the_limit_and_rows_come_lazily():
    table = IMPORTER.read(b"Name\n" + b"x" * 5000 + b"\nAda\n", ReadOptions(max_cell_chars=10))
    assert next(table.rows) == ["Name"]
    assert next(table.rows) == ["x" * 11]
    assert next(table.rows) == ["Ada"]


def test_a_wrong_encoding_chosen_by_the_host_is_named():
    with pytest.raises(UnreadableFile) as caught:
        rows("Name\nZoë\n".encode("cp1252"), encoding="utf-8")
    assert caught.value.code == "bad_encoding" and caught.value.row == 2
    for unknown in ("no-such-encoding", "hex", "rot13", "zlib", "\ud800"):
        with pytest.raises(UnreadableFile) as caught:
            rows(b"Name\n", encoding=unknown)
        assert caught.value.code == "bad_encoding"


def test_the_export_is_utf8_with_a_bom_and_crlf_and_reads_back():
    written = IMPORTER.write([["Name", "Notes"], ["Zoë", "a,b\nc"]])
    assert written.startswith(codecs.BOM_UTF8) and b"\r\n" in written
    assert rows(written) == [["Name", "Notes"], ["Zoë", "a,b\nc"]]
