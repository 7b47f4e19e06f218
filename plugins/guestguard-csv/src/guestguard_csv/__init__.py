"""GuestGuard plugin: guest lists from CSV, TSV and plain-text files, and
the CSV export.

Reading a file right, in this order: a byte-order mark decides the encoding
(UTF-8, UTF-16 LE/BE); else UTF-8 if the bytes are UTF-8 (a file mixing
UTF-8 with another encoding is refused, naming its lines); else the
statistical guess of charset-normalizer; else Windows-1252, what Excel's
legacy "CSV" writes. Line ends may be CRLF, LF or a Mac's lone CR. The
delimiter (comma, semicolon, tab or pipe) is the one that splits the most
lines of the first hundred into the same number of cells, so a title row
above the header does not fool it. Rows are parsed lazily as the caller
iterates."""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from guestguard.plugins import ReadOptions, Table, UnreadableFile, binary_kind, hookimpl

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_LINES = 100
SNIFF_CHARS = 64 * 1024
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Encodings charset-normalizer may name that we take; anything else (a rare
# East Asian code page guessed for a short Latin file) falls back to
# Windows-1252, the usual spreadsheet export on Windows.
FALLBACK = "cp1252"
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 written without its mark: every other byte is NUL."""
    sample = head[:512]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > len(sample) * 0.4 and even == 0:
        return "utf-16-le"
    if even > len(sample) * 0.4 and odd == 0:
        return "utf-16-be"
    return None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1 if b"\n" in data[:offset] else data.count(b"\r", 0, offset) + 1


def detect_encoding(data: bytes) -> str:
    """The file's encoding (see the module's docstring)."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return encoding
    utf16 = _utf16_without_bom(data)
    if utf16:
        return utf16
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        valid = _UTF8_MULTIBYTE.search(data[:exc.start])
        if valid is not None:
            raise UnreadableFile(
                f"The file mixes character encodings: line {_line_of(data, valid.start())} is written in "
                f"UTF-8 but line {_line_of(data, exc.start)} is not. Save the file again as "
                "\"CSV UTF-8\" and upload it once more.", code="mixed_encodings",
                row=_line_of(data, exc.start)) from None
    import charset_normalizer  # with the first file, not when the plugin loads

    matches = charset_normalizer.from_bytes(data[:SNIFF_CHARS])
    # Short lists of names fit several single-byte code pages equally well;
    # when Windows-1252 is among those that fit, it is the likeliest (Excel's
    # "CSV" on Windows in the West).
    if any(match.encoding == FALLBACK for match in matches):
        return FALLBACK
    guess = matches.best()
    if guess is not None and guess.encoding.replace("_", "-") in ("utf-8", "cp1252", "iso8859-1", "latin-1",
                                                                    "iso8859-15", "mac-roman", "cp1250",
                                                                    "cp1251", "iso8859-2", "utf-16"):
        return guess.encoding
    return FALLBACK


def sniff_delimiter(sample: str) -> str:
    """The delimiter splitting the most of the sample's lines into the same
    number of cells (two or more); a comma when none does."""
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        counts = Counter()
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
        try:
            for number, row in enumerate(reader):
                if number >= SNIFF_LINES:
                    break
                if any(cell.strip() for cell in row):
                    counts[len(row)] += 1
        except csv.Error:
            pass
        width, lines = max(((w, n) for w, n in counts.items() if w > 1), key=lambda item: (item[1], item[0]),
                           default=(0, 0))
        if (lines, width) > best_score:
            best, best_score = delimiter, (lines, width)
    return best


def _rows(data: bytes, text: io.TextIOWrapper, delimiter: str, max_cell: int) -> Iterator[list[str]]:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    line = 1
    try:
        for row in reader:
            line = reader.line_num + 1
            yield [cell if len(cell) <= max_cell else cell[:max_cell + 1] for cell in row]
    except csv.Error as exc:
        words = str(exc)
        if "field larger than field limit" in words:
            raise UnreadableFile(f"Line {line} holds a value of more than {csv.field_size_limit():,} "
                                 "characters; a cell may hold at most "
                                 f"{max_cell:,}.", code="cell_too_long", row=line) from None
        if "unexpected end of data" in words:
            raise UnreadableFile(f"Line {line} opens a quoted value that is never closed (a \" with no "
                                 "closing \"), so the rest of the file cannot be read.",
                                 code="unterminated_quote", row=line) from None
        raise UnreadableFile(f"Line {line} cannot be read: a quote mark is out of place ({words}).",
                             code="unreadable_file", row=line) from None
    except UnicodeDecodeError as exc:
        # The text is decoded a chunk ahead of the rows: the line is where
        # the bad bytes are, found in the bytes.
        line = _line_of(data, _bad_offset(data, text.encoding, exc))
        raise UnreadableFile(f"Line {line} is not valid {text.encoding} text; choose the file's "
                             "encoding, or save it again as \"CSV UTF-8\".", code="bad_encoding",
                             row=line) from None


def _bad_offset(data: bytes, encoding: str, error: UnicodeDecodeError) -> int:
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return exc.start
    return error.start


class CsvImporter:
    name = "csv"
    label = "CSV, TSV or text file"
    extensions = (".csv", ".tsv", ".tab", ".txt")
    media_types = ("text/csv", "text/tab-separated-values", "text/plain", "application/csv",
                   "application/vnd.ms-excel")
    media_type = "text/csv; charset=utf-8"

    def recognizes(self, head: bytes) -> bool:
        if binary_kind(head) is not None:
            return False
        if any(head.startswith(bom) for bom, _ in BOMS) or _utf16_without_bom(head):
            return True
        # Text has no NUL and few control characters besides tab and line ends.
        controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
        return b"\x00" not in head and controls <= len(head) // 100

    def read(self, data: bytes, options: ReadOptions) -> Table:
        encoding = options.encoding or detect_encoding(data)
        if encoding == "utf-8" and data.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        try:
            # Text encodings only: "hex" or "rot13" are codecs too.
            if not getattr(codecs.lookup(encoding), "_is_text_encoding", True):
                raise LookupError(encoding)
            # One sample of the start, decoded leniently, for the delimiter;
            # the rows are then read strictly, as a stream.
            sample = data[:SNIFF_CHARS].decode(encoding, errors="replace")
            text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
        except (LookupError, ValueError, TypeError):
            raise UnreadableFile(f"{encoding[:40]!r} is not a text encoding we know; choose another, or let it "
                                 "be detected.", code="bad_encoding") from None
        delimiter = options.delimiter or sniff_delimiter(sample)
        return Table(rows=_rows(data, text, delimiter, options.max_cell_chars), encoding=encoding,
                     delimiter=delimiter)

    def write(self, rows: Iterable[list[str]]) -> bytes:
        """UTF-8 with a byte-order mark and CRLF line ends: what Excel opens
        correctly by a double click."""
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerows(rows)
        return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")


@hookimpl
def register_importers(settings):
    return [CsvImporter()]
