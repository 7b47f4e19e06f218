"""Guest lists from spreadsheets: a corpus of real-looking exports, the bad
input the import must name, the all-or-nothing import, repeats (a second
submit, a retried request, two at once), undo and the export round trip.

The corpus is made here, byte for byte as the programs write it: Excel's
"CSV UTF-8" (BOM, CRLF), Excel's legacy CSV on a European Windows
(Windows-1252, semicolons), Numbers (LF, quoted everything), Google Sheets
(quoted newlines), Excel's "Unicode Text" (UTF-16 with BOM, tabs), a Mac's
lone CR line ends, and an .xlsx with a title row above the header."""
from __future__ import annotations

import codecs
import csv
import io
import re
import threading
import uuid
import zipfile

import openpyxl
import pytest
from sqlalchemy import select, text
from zope.sqlalchemy import mark_changed

from guestguard import timefmt
from guestguard.events.models import Guest
from guestguard.imports.models import GuestImport
from guestguard.plugins import Table, UnreadableFile, hookimpl
from guestguard.testing import event_host, scripted

EVENT = {"name": "Summer gala", "starts_at": "2031-06-21T19:00:00", "timezone": "Europe/London",
         "status": "published"}
ROWS = [
    ["Full name", "E-mail address", "Mobile", "+1", "Group", "Notes"],
    ["Zoë Ångström", "ZOE@example.com", "+44 7911 123456", "1", "Family", "Vegetarian"],
    ["François Müller", "francois@example.com", "", "0", "Work", ""],
    ["Phone Only", "", "+1 202 555 0143", "2", "", ""],
]


def csv_text(rows, delimiter=",", line_end="\r\n", quote_all=False):
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator=line_end,
               quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(rows)
    return out.getvalue()


def xlsx(rows, title=None):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Guests"
    if title:
        sheet.append([title])
        sheet.append([])
    for row in rows:
        sheet.append([int(cell) if cell.isdigit() and len(cell) < 3 else cell for cell in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


CORPUS = {
    "excel-utf8.csv": codecs.BOM_UTF8 + csv_text(ROWS).encode("utf-8"),
    "excel-legacy.csv": csv_text(ROWS, ";").encode("cp1252"),
    "numbers.csv": csv_text(ROWS, ",", "\n", quote_all=True).encode("utf-8"),
    "mac-cr.csv": csv_text(ROWS, ",", "\r").encode("utf-8"),
    "unicode-text.txt": csv_text(ROWS, "\t").encode("utf-16"),
    "pipes.txt": csv_text(ROWS, "|", "\n").encode("utf-8"),
    "title-row.xlsx": xlsx(ROWS, title="Guest list — Summer gala 2031"),
}


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def preview(app, host, name, data, status=200, **fields):
    return app.post(f"{host['url']}/guests/import/preview", params=fields, upload_files=[("file", name, data)],
                    headers=host["ada"], status=status).json


def commit(app, host, name=None, data=None, status=201, headers=None, **fields):
    files = [("file", name, data)] if name else []
    return app.post(f"{host['url']}/guests/import", params=fields, upload_files=files,
                    headers={**host["ada"], **(headers or {})}, status=status)


def guests(app, host):
    return sorted(app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"], key=lambda g: g["name"])


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_export_of_the_corpus_reads_the_same(app, host, name):
    found = preview(app, host, name, CORPUS[name])
    assert found["totals"] == {"rows": 3, "ok": 3, "duplicates": 0, "errors": 0, "to_add": 3, "to_update": 0,
                               "to_skip": 0}
    assert [(c["header"], c["field"], c["guessed"]) for c in found["columns"]] == [
        ("Full name", "name", True), ("E-mail address", "email", True), ("Mobile", "phone", True),
        ("+1", "plus_ones", True), ("Group", "group", True), ("Notes", "notes", True)]
    first = found["rows"][0]
    assert first["values"]["name"] == "Zoë Ångström"
    assert first["values"]["email"] == "zoe@example.com"
    assert first["values"]["phone"] == "+447911123456"
    assert found["rows"][1]["values"]["name"] == "François Müller"
    assert found["rows"][2]["values"]["phone"] == "+12025550143"
    expected_header = 3 if name.endswith(".xlsx") else 1
    assert found["file"]["header_row"] == expected_header
    assert [row["row"] for row in found["rows"]] == [expected_header + 1, expected_header + 2, expected_header + 3]
    assert guests(app, host) == [], "a preview adds nobody"


def test_the_preview_names_what_it_detected(app, host):
    legacy = preview(app, host, "excel-legacy.csv", CORPUS["excel-legacy.csv"])["file"]
    assert (legacy["encoding"], legacy["delimiter"]) == ("cp1252", "semicolon")
    unicode_text = preview(app, host, "u.txt", CORPUS["unicode-text.txt"])["file"]
    assert (unicode_text["encoding"], unicode_text["delimiter"]) == ("utf-16", "tab")
    assert preview(app, host, "t.xlsx", CORPUS["title-row.xlsx"])["file"]["sheet"] == "Guests"


def test_google_sheets_quoted_newlines_stay_in_their_cell(app, host):
    data = csv_text([["Name", "Email", "Notes"], ["Ada", "ada@example.org", "Line one\nline two"],
                     ["Bob", "bob@example.org", ""]], ",", "\r\n").encode()
    found = preview(app, host, "sheets.csv", data)
    assert found["rows"][0]["values"]["notes"] == "Line one\nline two"
    assert [row["row"] for row in found["rows"]] == [2, 3]


def test_the_host_overrides_the_encoding_delimiter_and_mapping(app, host):
    found = preview(app, host, "x.csv", CORPUS["excel-legacy.csv"], encoding="latin-1", delimiter="semicolon",
                    mapping='{"Group": "", "F": "group"}')
    assert found["file"]["encoding"] == "latin-1"
    notes = next(c for c in found["columns"] if c["header"] == "Notes")
    assert (notes["field"], notes["guessed"]) == ("group", False)
    assert found["rows"][0]["values"]["group"] == "Vegetarian"
    assert "Group" in found["ignored_columns"]


def test_first_and_last_names_are_joined_and_exports_of_luma_and_eventbrite_map(app, host):
    eventbrite = csv_text([["Order #", "First Name", "Last Name", "Email", "Ticket Type"],
                           ["1001", "Grace", "Hopper", "grace@example.com", "VIP"]]).encode()
    found = preview(app, host, "eventbrite.csv", eventbrite)
    assert found["rows"][0]["values"]["name"] == "Grace Hopper"
    assert found["ignored_columns"] == ["Order #", "Ticket Type"]
    luma = csv_text([["api_id", "name", "first_name", "last_name", "email", "phone_number"],
                     ["gst-1", "Ada Lovelace", "Ada", "Lovelace", "ada@example.com", "+447911123457"]]).encode()
    found = preview(app, host, "luma.csv", luma)
    assert found["rows"][0]["values"] == {"name": "Ada Lovelace", "email": "ada@example.com",
                                          "phone": "+447911123457", "plus_ones_allowed": 0}


def test_rows_are_checked_like_a_guest_added_by_hand(app, host):
    data = csv_text([["Name", "Email", "Phone", "Plus-ones"],
                     ["", "a@example.com", "", ""], ["Bad Email", "not-an-email", "", ""],
                     ["Bad Phone", "", "12", ""], ["Many", "", "", "21"], ["Half", "", "", "1.5"],
                     ["Formula", "=HYPERLINK(\"http://evil\")", "", ""], ["Kept", "'=x@example.com", "", ""],
                     ["Fine", "fine@example.com", "", ""]]).encode()
    rows = {row["row"]: row for row in preview(app, host, "bad.csv", data)["rows"]}
    assert rows[2]["errors"] == {"name": "is required"}
    assert "email" in rows[3]["errors"]
    assert rows[4]["errors"]["phone"].startswith("is not")
    assert rows[5]["errors"] == {"plus_ones_allowed": "must be less than or equal to 20"}
    assert rows[6]["errors"] == {"plus_ones_allowed": "must be a whole number"}
    assert "formula" in rows[7]["errors"]["email"]
    assert rows[8]["values"]["email"] == "=x@example.com"  # the apostrophe kept it as text
    assert rows[9]["status"] == "ok"


def test_duplicates_within_the_file_and_against_the_list_are_skipped_or_updated(app, host):
    app.post_json(f"{host['url']}/guests", {"name": "Zoe Old", "email": "zoe@example.com", "notes": "old"},
                  headers=host["ada"], status=201)
    data = csv_text([*ROWS, ["Zoë again", "zoe@EXAMPLE.com", "", "", "", ""],
                     ["Phone twin", "", "+12025550143", "", "", ""]]).encode()
    found = preview(app, host, "d.csv", data)
    statuses = {row["row"]: (row["status"], row["duplicate_of"]) for row in found["rows"]}
    assert statuses[2][0] == "duplicate" and statuses[2][1]["name"] == "Zoe Old"
    assert statuses[5][0] == "duplicate"
    assert statuses[6] == ("duplicate", {"row": 4, "same": "phone"})
    result = commit(app, host, "d.csv", data, duplicates="update").json
    assert (result["added"], result["updated"], result["skipped"]) == (2, 1, 2)
    zoe = next(g for g in guests(app, host) if g["email"] == "zoe@example.com")
    assert (zoe["name"], zoe["notes"]) == ("Zoë Ångström", "Vegetarian")


def test_an_import_adds_the_valid_rows_reports_the_others_and_is_recorded(make_app, run_in_request, listener):
    app = make_app(plugins=[("listener", listener)])
    host = event_host(app, run_in_request, EVENT)
    data = csv_text([*ROWS, ["", "nobody@example.com", "", "", "", ""]]).encode()
    result = commit(app, host, "list.csv", data).json
    assert (result["added"], result["updated"], result["skipped"]) == (3, 0, 0)
    assert result["errors"] == [{"row": 5, "reason": "Name is required"}]
    assert [g["name"] for g in guests(app, host)] == ["François Müller", "Phone Only", "Zoë Ångström"]
    imp = run_in_request(lambda r: r.db.scalar(select(GuestImport)), app.app.registry)
    assert (imp.status, imp.file_name, imp.added, imp.errors) == ("imported", "list.csv", 3, 1)
    actions = run_in_request(lambda r: [a for (a,) in r.db.execute(
        text("SELECT action FROM audit_events WHERE action LIKE 'guests.%'"))], app.app.registry)
    assert actions == ["guests.imported"]
    [event] = listener.named("guests.imported")
    assert dict(event.data) == {"event_id": host["event"]["id"], "import_id": result["import_id"], "added": 3,
                                "updated": 0, "skipped": 0, "errors": 1}
    assert listener.names("guest.created") == [], "an import announces itself once, not per guest"


def test_a_second_import_of_the_same_file_is_refused_and_adds_nobody(app, host):
    data = CORPUS["excel-utf8.csv"]
    first = commit(app, host, "a.csv", data).json
    again = commit(app, host, "a-copy.csv", data, status=409).json["error"]
    assert again["code"] == "already_imported" and again["import_id"] == first["import_id"]
    assert "a.csv was already imported" in again["message"]
    # When, in the event's time zone and clock (London: 24-hour, GMT or BST).
    assert re.search(r"into this event \(\w{3} \d{1,2} \w{3} \d{4}, \d{2}:\d{2} (GMT|BST): 3 added",
                     again["message"]), again["message"]
    assert len(guests(app, host)) == 3


def test_a_preview_is_imported_by_its_id_once(app, host):
    found = preview(app, host, "p.csv", CORPUS["numbers.csv"])
    assert commit(app, host, import_id=found["import_id"]).json["added"] == 3
    assert commit(app, host, import_id=found["import_id"], status=409).json["error"]["code"] == "already_imported"
    assert len(guests(app, host)) == 3


def test_a_retried_request_with_an_idempotency_key_gets_the_first_answer(app, host):
    first = commit(app, host, "r.csv", CORPUS["excel-utf8.csv"], headers={"Idempotency-Key": "import-1"})
    again = commit(app, host, "r.csv", CORPUS["excel-utf8.csv"], headers={"Idempotency-Key": "import-1"})
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert len(guests(app, host)) == 3


def arm_failure(request, errcode: str = "P0001") -> None:
    """A trigger refusing the insert of "Guest 150" (PostgreSQL: with
    ``errcode``; 57P01 is the server shutting down)."""
    if request.db.get_bind().dialect.name == "postgresql":
        request.db.execute(text("CREATE FUNCTION refuse_guest() RETURNS trigger AS $$ BEGIN "
                                "IF NEW.name = 'Guest 150' THEN RAISE EXCEPTION 'injected failure' USING ERRCODE = "
                                f"'{errcode}'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        request.db.execute(text("CREATE TRIGGER refuse_guest BEFORE INSERT ON guests FOR EACH ROW "
                                "EXECUTE FUNCTION refuse_guest()"))
    else:
        request.db.execute(text("CREATE TRIGGER refuse_guest BEFORE INSERT ON guests WHEN NEW.name = "
                                "'Guest 150' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"))
    mark_changed(request.db)  # DDL alone does not tell the transaction to commit


def disarm_failure(request) -> None:
    postgresql = request.db.get_bind().dialect.name == "postgresql"
    request.db.execute(text("DROP TRIGGER refuse_guest" + (" ON guests" if postgresql else "")))
    if postgresql:
        request.db.execute(text("DROP FUNCTION refuse_guest()"))
    mark_changed(request.db)


BIG = csv_text([["Name", "Email"]] + [[f"Guest {n:03}", f"g{n}@example.com"] for n in range(300)]).encode()


def nothing_imported(app, host, run_in_request) -> bool:
    return guests(app, host) == [] and run_in_request(
        lambda r: r.db.scalar(select(GuestImport.id).where(GuestImport.status == "imported")), app.app.registry) is None


def test_all_or_nothing_when_an_insert_fails_mid_batch(app, host, run_in_request):
    """The 150th guest's insert fails: nobody is added, no import is recorded."""
    run_in_request(arm_failure, app.app.registry)
    try:
        commit(app, host, "big.csv", BIG, status=500)
    finally:
        run_in_request(disarm_failure, app.app.registry)
    assert nothing_imported(app, host, run_in_request)
    assert commit(app, host, "big.csv", BIG).json["added"] == 300


def test_the_database_going_down_mid_import_is_a_503_and_nothing_is_written(app, host, run_in_request,
                                                                             postgres_url):
    """PostgreSQL says it is shutting down (57P01) at the 150th insert."""
    if postgres_url is None:
        pytest.skip("SQLite has no server to go down")
    run_in_request(lambda request: arm_failure(request, "57P01"), app.app.registry)
    try:
        answer = commit(app, host, "big.csv", BIG, status=503)
    finally:
        run_in_request(disarm_failure, app.app.registry)
    assert answer.json["error"]["code"] == "unavailable" and answer.headers["Retry-After"]
    assert nothing_imported(app, host, run_in_request)


def test_redis_down_the_import_still_lands_and_its_event_waits(make_app, run_in_request):
    """Rate limits fail open and the domain event's delivery is a row that waits for the queue."""
    from guestguard.domain import DomainEventRow
    from guestguard.testing import free_port

    app = make_app({"ratelimit.enabled": "true", "ratelimit.url": f"redis://127.0.0.1:{free_port()}/0",
                    "huey.immediate": "false"})

    def unreachable(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    app.app.registry["huey"].storage.enqueue = unreachable
    host = event_host(app, run_in_request, EVENT)
    assert commit(app, host, "r.csv", CORPUS["excel-utf8.csv"]).json["added"] == 3
    assert len(guests(app, host)) == 3
    pending = run_in_request(lambda r: r.db.scalar(select(DomainEventRow.status).where(
        DomainEventRow.name == "guests.imported")), app.app.registry)
    assert pending == "pending"


def test_undo_removes_its_guests_while_none_is_invited(app, host):
    kept = app.post_json(f"{host['url']}/guests", {"name": "Kept", "email": "kept@example.com"},
                         headers=host["ada"], status=201).json["guest"]
    result = commit(app, host, "u.csv", CORPUS["excel-utf8.csv"]).json
    app.delete(f"{host['url']}/imports/{result['import_id']}", headers=host["ada"], status=204)
    assert [g["id"] for g in guests(app, host)] == [kept["id"]]
    again = app.delete(f"{host['url']}/imports/{result['import_id']}", headers=host["ada"], status=409)
    assert again.json["error"]["code"] == "not_undoable"
    # Undone, the same file can be imported again; once a guest is invited, no undo.
    second = commit(app, host, "u.csv", CORPUS["excel-utf8.csv"]).json
    zoe = next(g for g in guests(app, host) if g["email"] == "zoe@example.com")
    app.post_json(f"{host['url']}/guests/{zoe['id']}/tokens", {}, headers=host["ada"], status=201)
    refused = app.delete(f"{host['url']}/imports/{second['import_id']}", headers=host["ada"], status=409).json
    assert refused["error"]["code"] == "already_invited"
    assert len(guests(app, host)) == 4


BAD_INPUT = {
    "png renamed .csv": ("photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(200), 422, "unsupported_format", "PNG image"),
    "empty file": ("empty.csv", b"", 422, "empty_file", "empty"),
    "header but no rows": ("h.csv", b"Name,Email\r\n", 422, "no_rows", "no guest rows"),
    "unterminated quote": ("q.csv", b'Name,Email\n"Ada,ada@example.com\nBob,bob@example.com\n', 422,
                           "unterminated_quote", "never closed"),
    "mixed encodings": ("m.csv", "Name\nZoë\n".encode() + "Müller\n".encode("cp1252"), 422, "mixed_encodings",
                        "line 3"),
    "5,001 rows": ("many.csv", ("Name\n" + "".join(f"G{n}\n" for n in range(5001))).encode(), 422,
                   "too_many_rows", "5,000"),
    "51 columns": ("wide.csv", (",".join(f"C{n}" for n in range(51)) + "\nx\n").encode(), 422,
                   "too_many_columns", "50"),
    "1 MB + 1 byte": ("big.csv", b"Name\n" + b"x" * (1024 * 1024 - 4), 413, "too_large", "1,048,576"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_named_and_nothing_is_written(app, host, run_in_request, case):
    name, data, status, code, words = BAD_INPUT[case]
    for call in (preview, commit):
        error = call(app, host, name, data, status=status)
        error = error.json if hasattr(error, "json") else error
        assert error["error"]["code"] == code, case
        assert words in error["error"]["message"], error["error"]["message"]
    assert guests(app, host) == []
    assert run_in_request(lambda r: r.db.scalar(select(GuestImport.id)), app.app.registry) is None


def test_only_unknown_columns_and_ragged_rows_are_named_per_row(app, host):
    unknown = csv_text([["Colour", "Size"], ["red", "L"]]).encode()
    found = preview(app, host, "u.csv", unknown)
    assert found["ignored_columns"] == ["Colour", "Size"]
    assert found["rows"][0]["errors"]["name"] == "is required: choose the column that holds names"
    assert commit(app, host, "u.csv", unknown, status=422).json["error"]["code"] == "nothing_to_import"
    ragged = b"Name,Email\nAda,ada@example.com,extra,cells\nBob\n"
    rows = preview(app, host, "r.csv", ragged)["rows"]
    assert rows[0]["errors"]["row"].startswith("has 4 cells but the header has 2")
    assert rows[1]["status"] == "ok"


def test_a_zip_bomb_disguised_as_xlsx_is_refused_unopened(app, host):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (60 * 1024 * 1024))
    error = preview(app, host, "bomb.xlsx", out.getvalue(), status=422)["error"]
    assert error["code"] == "zip_bomb" and "zip bomb" in error["message"]


def test_a_long_cell_is_that_rows_error(app, host):
    data = f"Name,Notes\nAda,{'n' * 1001}\nBob,short\n".encode()
    rows = preview(app, host, "l.csv", data)["rows"]
    assert rows[0]["errors"] == {"notes": "is longer than 1,000 characters"}
    assert rows[1]["status"] == "ok"


def test_the_export_writes_times_as_the_event_page_does(app, host, run_in_request):
    grace = app.post_json(f"{host['url']}/guests", {"name": "Grace", "email": "grace@example.com"},
                          headers=host["ada"], status=201).json["guest"]
    app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)

    def invited_cell(timezone):
        app.patch_json(host["url"], {"timezone": timezone}, headers=host["ada"])
        body = app.get(f"{host['url']}/guests/export?format=csv", headers=host["ada"]).body.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(body)))
        return rows[1][rows[0].index("Invited at")]

    invited = run_in_request(lambda r: r.db.get(Guest, uuid.UUID(grace["id"])).invited_at)
    assert invited_cell("Europe/London") == timefmt.when(invited, "Europe/London")
    assert invited_cell("America/New_York") == timefmt.when(invited, "America/New_York")
    assert invited_cell("America/New_York").endswith(("am EDT", "pm EDT", "am EST", "pm EST"))


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_export_neutralizes_formulas_and_imports_back(app, host, run_in_request, fmt):
    app.post_json(f"{host['url']}/guests", [
        {"name": "=cmd|' /C calc'!A0", "email": "evil@example.com", "notes": "@SUM(1)"},
        {"name": "Grace", "phone": "+44 20 7946 0958", "tags": ["vip", "family"], "plus_ones_allowed": 2}],
        headers=host["ada"], status=201)
    response = app.get(f"{host['url']}/guests/export?format={fmt}", headers=host["ada"])
    assert 'filename="guests.' + fmt in response.headers["Content-Disposition"]
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(response.body), read_only=True).active
        rows = [[cell or "" for cell in row] for row in sheet.iter_rows(values_only=True)]
    assert rows[0][:4] == ["Name", "Email", "Phone", "Plus-ones"] and rows[0][-1] == "Delivery"
    assert {row[-1] for row in rows[1:]} == {"Not invited"}
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(str(cell).startswith(("=", "+", "-", "@")) for cell in cells)
    assert "'=cmd|' /C calc'!A0" in cells and "'+442079460958" in cells
    staff = app.get(f"{host['url']}/guests/export", headers=host["sam"], status=403).json
    assert staff["error"]["required"] == "guests.export"
    # The export imports back into another event as it was.
    other = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT},
                          headers=host["ada"]).json["event"]
    back = {**host, "url": f"/api/v1/events/{other['id']}"}
    assert commit(app, back, f"guests.{fmt}", response.body).json["added"] == 2
    names = {g["name"]: g for g in guests(app, back)}
    assert names["=cmd|' /C calc'!A0"]["notes"] == "@SUM(1)"
    assert (names["Grace"]["phone"], names["Grace"]["tags"], names["Grace"]["plus_ones_allowed"]) == (
        "+442079460958", ["vip", "family"], 2)


def test_the_template_imports_cleanly(app, host):
    template = app.get(f"{host['url']}/guests/import/template", headers=host["ada"])
    assert template.content_type == "text/csv"
    assert commit(app, host, "template.csv", template.body).json["added"] == 2


def test_two_imports_of_one_file_at_once_add_it_once(make_app, run_in_request, postgres_url):
    """On PostgreSQL: the event's import lock makes the second wait and then refuse."""
    if postgres_url is None:
        pytest.skip("two requests at once need PostgreSQL (SQLite has one writer)")
    app = make_app()
    host = event_host(app, run_in_request, EVENT)
    answers = []

    def post():
        answers.append(commit(app, host, "twice.csv", CORPUS["excel-utf8.csv"], status="*").status_int)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 409]
    assert len(guests(app, host)) == 3


def test_the_host_page_previews_and_imports_without_javascript(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    browser = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    page = browser.get(f"/events/{event_id}/import")
    assert "Import guests from a spreadsheet" in page.text and 'type="file"' in page.text
    data = csv_text([*ROWS, ["", "x@example.com", "", "", "", ""]]).encode()
    shown = browser.post(f"/events/{event_id}/import", params={"csrf_token": csrf(page)},
                         upload_files=[("file", "g.csv", data)])
    assert "Looks good — import 3 guests" in shown.text
    assert "Name is required" in shown.text and 'class="cell-error"' in shown.text
    assert shown.text.count("guessed") == 6
    form = shown.forms["commit-form"]
    done = form.submit().follow()
    assert "Imported 3 guests. 1 row had errors." in done.text
    errors = browser.get(done.html.find("a", string=lambda s: s and "rows with errors" in s)["href"])
    assert list(csv.reader(io.StringIO(errors.text)))[1][:2] == ["5", "Name is required"]
    # A second click on the same preview shows the same summary and adds nobody.
    again = browser.post(form.action, params={"csrf_token": csrf(page), "import_id": form["import_id"].value})
    assert again.status_int == 303
    assert len(guests(app, host)) == 3
    undone = done.forms["undo-form"].submit().follow()
    assert "was undone" in undone.text
    assert guests(app, host) == []


class JsonLines:
    """An importer from a plugin: JSON lines, the header from the first object's keys."""

    name = "jsonl"
    label = "JSON lines"
    extensions = (".jsonl",)
    media_types = ("application/jsonl",)

    def recognizes(self, head):
        return head.lstrip().startswith(b"{")

    def read(self, data, options):
        import json

        def rows():
            for number, line in enumerate(data.decode().splitlines(), start=1):
                try:
                    item = json.loads(line)
                except ValueError:
                    raise UnreadableFile(f"Line {number} is not JSON.", row=number) from None
                if number == 1:
                    yield list(item)
                yield [str(value) for value in item.values()]

        return Table(rows=rows(), encoding="utf-8")


class JsonLinesPlugin:
    @hookimpl
    def register_importers(self, settings):
        return [JsonLines()]


def test_an_importer_from_a_plugin_reads_its_format(make_app, run_in_request):
    app = make_app(plugins=[("jsonl", JsonLinesPlugin())])
    host = event_host(app, run_in_request, EVENT)
    data = b'{"name": "Ada", "email": "ada@example.com"}\n{"name": "Bob", "email": "bob@example.com"}\n'
    assert commit(app, host, "people.jsonl", data).json["added"] == 2
    error = preview(app, host, "bad.jsonl", b'{"name": "Ada"}\nnot json\n', status=422)["error"]
    assert (error["code"], error["row"], error["message"]) == ("unreadable_file", 2, "Line 2 is not JSON.")
    # It cannot write, so it is no export format.
    assert app.get(f"{host['url']}/guests/export?format=jsonl", headers=host["ada"], status=400)


def test_the_page_changes_a_mapping_and_refuses_a_post_without_its_token(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    browser = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    page = browser.get(f"/events/{event_id}/import")
    data = csv_text([["Who", "Contact"], ["Ada", "ada@example.com"], ["Bob", "bob@example.com"]]).encode()
    refused = browser.post(f"/events/{event_id}/import", upload_files=[("file", "g.csv", data)], status=400)
    assert "Looks good" not in refused.text
    shown = browser.post(f"/events/{event_id}/import", params={"csrf_token": csrf(page)},
                         upload_files=[("file", "g.csv", data)])
    assert "No row can be imported yet" in shown.text and "Name is required: choose the column" in shown.text
    form = shown.forms["mapping-form"]
    form["map-0"], form["map-1"] = "name", "email"
    again = form.submit()
    assert "Looks good — import 2 guests" in again.text and "guessed" not in again.text
    done = again.forms["commit-form"].submit().follow()
    assert "Imported 2 guests." in done.text
    assert {g["email"] for g in guests(app, host)} == {"ada@example.com", "bob@example.com"}
    missing = browser.post(f"/events/{event_id}/import", params={"csrf_token": csrf(page)}, status=400)
    assert "Choose a file to import" in missing.text


def test_undo_restores_the_guests_an_import_updated(app, host):
    grace = app.post_json(f"{host['url']}/guests", {"name": "Grace", "email": "grace@example.com", "notes": "old"},
                          headers=host["ada"], status=201).json["guest"]
    data = csv_text([["Name", "Email", "Notes", "Group"], ["Grace Hopper", "grace@example.com", "new", "VIP"],
                     ["Alan", "alan@example.com", "", ""]]).encode()
    result = commit(app, host, "u.csv", data, duplicates="update").json
    assert (result["added"], result["updated"]) == (1, 1)
    changed = app.get(f"{host['url']}/guests/{grace['id']}", headers=host["ada"]).json["guest"]
    assert (changed["name"], changed["notes"], changed["group"]) == ("Grace Hopper", "new", "VIP")
    app.delete(f"{host['url']}/imports/{result['import_id']}", headers=host["ada"], status=204)
    back = app.get(f"{host['url']}/guests/{grace['id']}", headers=host["ada"]).json["guest"]
    assert (back["name"], back["notes"], back["group"]) == ("Grace", "old", "")
    assert [g["name"] for g in guests(app, host)] == ["Grace"]


def test_files_are_kept_for_keep_hours_then_previews_go_and_imports_keep_their_counts(app, host, run_in_request):
    import datetime as dt

    import time_machine

    from guestguard.imports.services import purge

    found = preview(app, host, "p.csv", CORPUS["numbers.csv"])
    done = commit(app, host, "i.csv", CORPUS["excel-utf8.csv"]).json
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)), \
            scripted(app.app.registry) as env:
        assert purge(env["request"]) == 1  # the preview never imported; it opens its own transactions
    rows = run_in_request(lambda r: {str(i.id): (i.status, i.content, i.added)
                                     for i in r.db.scalars(select(GuestImport))}, app.app.registry)
    assert found["import_id"] not in rows
    assert rows[done["import_id"]] == ("imported", None, 3)
    expired = commit(app, host, import_id=found["import_id"], status=404).json["error"]
    assert expired["code"] == "not_found"
    gone = app.get(f"{host['url']}/imports/{done['import_id']}/errors", headers=host["ada"], status=410)
    assert gone.json["error"]["code"] == "expired"


def keep_checks_of(run_in_request, registry, import_id, change):
    """Change what the preview ``import_id`` kept of its checked rows."""
    import uuid

    from sqlalchemy.orm.attributes import flag_modified

    def edit(request):
        imp = request.db.get(GuestImport, uuid.UUID(import_id))
        change(imp.checks)
        flag_modified(imp, "checks")
    run_in_request(edit, registry)


def test_the_import_takes_the_rows_its_preview_checked(app, host, run_in_request):
    found = preview(app, host, "p.csv", CORPUS["excel-utf8.csv"])
    kept = run_in_request(lambda r: r.db.scalar(select(GuestImport.checks)), app.app.registry)
    assert [row["n"] for row in kept["rows"]] == [2, 3, 4]
    assert kept["rows"][0]["stored"]["phone"] == "+447911123456"
    # What the import adds is what the preview checked, not the file read again.
    keep_checks_of(run_in_request, app.app.registry, found["import_id"],
                   lambda checks: checks["rows"][0]["stored"].update(name="Checked at preview"))
    assert commit(app, host, import_id=found["import_id"]).json["added"] == 3
    assert "Checked at preview" in [g["name"] for g in guests(app, host)]


def test_the_file_sent_again_as_previewed_takes_its_checks_and_another_reading_does_not(app, host, run_in_request):
    found = preview(app, host, "p.csv", CORPUS["excel-utf8.csv"])
    keep_checks_of(run_in_request, app.app.registry, found["import_id"],
                   lambda checks: checks["rows"][0]["stored"].update(name="Checked at preview"))
    # Asked to read the file otherwise (here: another delimiter) the rows are checked anew.
    other = commit(app, host, "p.csv", CORPUS["excel-utf8.csv"], delimiter="semicolon", status=(201, 422))
    assert "Checked at preview" not in str(other.json)
    app.delete(f"{host['url']}/imports/{other.json['import_id']}", headers=host["ada"], status=204) \
        if other.status_int == 201 else None
    assert commit(app, host, "p.csv", CORPUS["excel-utf8.csv"]).json["added"] == 3
    assert "Checked at preview" in [g["name"] for g in guests(app, host)]


def test_kept_checks_of_other_rules_are_not_used(app, host, run_in_request):
    found = preview(app, host, "p.csv", CORPUS["excel-utf8.csv"])

    def older_rules(checks):
        checks["rows"][0]["stored"].update(name="Checked at preview")
        checks["rules"]["phone_region"] = "ZZ"  # the event was in another country's time zone then
    keep_checks_of(run_in_request, app.app.registry, found["import_id"], older_rules)
    assert commit(app, host, import_id=found["import_id"]).json["added"] == 3
    assert [g["name"] for g in guests(app, host)] == ["François Müller", "Phone Only", "Zoë Ångström"]


def test_guests_added_after_the_preview_are_duplicates_at_the_import(app, host):
    found = preview(app, host, "p.csv", CORPUS["excel-utf8.csv"])
    assert found["totals"]["duplicates"] == 0
    app.post_json(f"{host['url']}/guests", {"name": "Zoe by hand", "email": "zoe@example.com"},
                  headers=host["ada"], status=201)
    app.post_json(f"{host['url']}/guests", {"name": "Phone by hand", "phone": "+1 202 555 0143"},
                  headers=host["ada"], status=201)
    result = commit(app, host, import_id=found["import_id"]).json
    assert (result["added"], result["skipped"]) == (1, 2)
    assert commit(app, host, import_id=found["import_id"], status=409).json["error"]["code"] == "already_imported"
    assert [g["name"] for g in guests(app, host)] == ["François Müller", "Phone by hand", "Zoe by hand"]


def test_the_error_rows_file_comes_from_the_kept_checks(app, host):
    data = csv_text([*ROWS, ["", "nobody@example.com", "", "", "", ""]]).encode()
    found = preview(app, host, "e.csv", data)
    result = commit(app, host, import_id=found["import_id"]).json
    assert result["errors"] == [{"row": 5, "reason": "Name is required"}]
    body = app.get(f"{host['url']}/imports/{found['import_id']}/errors", headers=host["ada"]).text
    assert "Name is required" in body and "nobody@example.com" in body


def test_an_event_moved_to_another_country_after_the_preview_has_its_file_checked_again(app, host, run_in_request):
    """Phone numbers are read in the country of the event's time zone: a
    local number previewed for a London event is checked again when the
    event moves to New York before the import."""
    data = csv_text([["Name", "Mobile"], ["Local Number", "07911 123456"]]).encode()
    found = preview(app, host, "local.csv", data)
    assert found["rows"][0]["values"]["phone"] == "+447911123456"
    app.patch_json(host["url"], {"timezone": "America/New_York"}, headers=host["ada"])
    result = commit(app, host, import_id=found["import_id"], status=(201, 422)).json
    assert "+447911123456" not in str(guests(app, host)), "the kept check of another region was not used"
    assert result.get("added", 0) == 0


@pytest.mark.one_pass("sqlite")
def test_the_export_reads_the_replica_when_there_is_one_and_everything_else_the_primary(make_app, run_in_request,
                                                                                       db_url, tmp_path):
    """The replica is a copy of the database taken before Linus was added:
    an export through it lags by him, as one behind a lagging replica would,
    while the guest list the API reads comes from the primary."""
    import sqlite3

    if not db_url.startswith("sqlite"):
        pytest.skip("the replica here is a copy of the SQLite database")
    primary = make_app()
    host = event_host(primary, run_in_request, EVENT)
    primary.post_json(f"{host['url']}/guests", {"name": "Grace"}, headers=host["ada"], status=201)
    replica_path = tmp_path / "replica.sqlite"
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as source, sqlite3.connect(replica_path) as copy:
        source.backup(copy)
    primary.post_json(f"{host['url']}/guests", {"name": "Linus"}, headers=host["ada"], status=201)
    with_replica = make_app({"db.replica_url": f"sqlite:///{replica_path}"})

    def names(app) -> list[str]:
        body = app.get(f"{host['url']}/guests/export?format=csv", headers=host["ada"]).body.decode("utf-8-sig")
        return [row[0] for row in list(csv.reader(io.StringIO(body)))[1:]]

    assert names(primary) == ["Grace", "Linus"]
    assert names(with_replica) == ["Grace"]
    listed = with_replica.get(f"{host['url']}/guests", headers=host["ada"]).json
    assert sorted(guest["name"] for guest in listed["guests"]) == ["Grace", "Linus"]


@pytest.mark.one_pass("sqlite")
def test_an_unreachable_replica_fails_the_export_with_503_and_nothing_else(make_app, run_in_request):
    from guestguard.testing import free_port

    app = make_app({"db.replica_url": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/replica",
                    "db.pool_timeout": "2"})
    host = event_host(app, run_in_request, EVENT)
    app.post_json(f"{host['url']}/guests", {"name": "Grace"}, headers=host["ada"], status=201)
    refused = app.get(f"{host['url']}/guests/export?format=csv", headers=host["ada"], status=503)
    assert refused.headers["Retry-After"]
    assert [guest["name"] for guest in app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]] \
        == ["Grace"]
