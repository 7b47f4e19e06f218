"""Passes and door check-in: the pass a yes brings, and letting each guest
and plus-one in exactly once, with every attempt logged."""
import base64
import datetime as dt
import functools
import io
import re
import uuid
from zoneinfo import ZoneInfo

import pytest
import segno
import time_machine
from sqlalchemy import func, select, update

from guestguard.audit.models import AuditEvent
from guestguard.checkin import passes
from guestguard.checkin.models import Admission, GuestPass
from guestguard.events.models import Guest
from guestguard.guard.models import AccessEntry
from guestguard.testing import add_guest, clicks, event_host, inbox, issue, new_client, scalar, together

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "venue": "Kew Gardens"}


@pytest.fixture
def app(make_app, listener):
    return make_app({"db.pool_size": "24"}, plugins=[("listener", listener)])


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def said_yes(app, host, plus_ones=0, **fields):
    """A guest who said yes: (guest, token, pass secret, pass code)."""
    guest = add_guest(app, host, plus_ones_allowed=max(plus_ones, fields.pop("plus_ones_allowed", 0)), **fields)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": plus_ones})
    page = app.get(f"/access/{token}")
    code = page.html.find(class_="pass-code").get_text(strip=True)
    return guest, token, passes.secret_for(app.app.registry.settings, token), code


def scan(app, host, status=201, who="sam", **body):
    body.setdefault("scan_id", str(uuid.uuid4()))
    return app.post_json(f"{host['url']}/checkins", body, headers=host[who], status=status).json


def admissions(app, run_in_request, **where):
    query = select(func.count()).select_from(Admission).where(Admission.undone_at.is_(None))
    for name, value in where.items():
        query = query.where(getattr(Admission, name) == value)
    return scalar(app, run_in_request, query)


# --- the pass ---------------------------------------------------------------------


def test_a_yes_brings_a_pass_on_the_page_and_in_the_confirmation(app, host, run_in_request):
    guest, token, secret, code = said_yes(app, host)
    page = app.get(f"/access/{token}")
    section = page.html.find(class_="guest-pass")
    assert section.find("svg") is not None, "the QR code drawn on the page"
    drawn = passes.qr_svg.cache_info()
    again = app.get(f"/access/{token}").html.find(class_="guest-pass").find("svg")
    assert str(again) == str(section.find("svg"))
    assert passes.qr_svg.cache_info().hits == drawn.hits + 1, "a repeat view shows the code drawn before"
    assert re.fullmatch(r"[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}", code)
    [message] = inbox(app, "grace@example.com")
    assert code in message.text and code in message.html
    assert "data:image/png;base64," in message.html, "the QR in the email"
    stored = run_in_request(lambda r: r.db.scalars(select(GuestPass)).one(), app.app.registry)
    # Only the secret's hash is kept; the secret is 128 bits and not the token.
    assert stored.secret_hash == passes.hash_token(secret) and secret not in str(vars(stored))
    assert len(base64.b32decode(secret + "======")) * 8 >= 80
    assert token not in secret and secret != token
    # The QR holds the secret.
    image = app.get(f"/access/{token}/pass.svg")
    assert image.content_type == "image/svg+xml" and image.headers["Cache-Control"] == "no-store"


def test_no_pass_before_a_yes_nor_for_no_or_maybe(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    assert app.get(f"/access/{token}").html.find(class_="guest-pass") is None
    for response in ("no", "maybe"):
        app.post_json(f"/api/v1/rsvp/{token}", {"response": response})
        assert app.get(f"/access/{token}").html.find(class_="guest-pass") is None
    app.get(f"/access/{token}/pass.svg", status=404)
    assert scalar(app, run_in_request, select(func.count()).select_from(GuestPass)) == 0


def test_a_new_link_revokes_the_pass_and_brings_a_new_one(app, host, run_in_request):
    guest, token, secret, code = said_yes(app, host)
    new_token = issue(app, host, guest)["token"]
    refused = scan(app, host, status=409, code=secret)["error"]
    assert refused["code"] == "pass_revoked"
    assert refused["party"]["name"] == "Grace Hopper" and "revoked" in refused["party"]["warnings"][0]
    assert scan(app, host, status=409, code=code)["error"]["code"] == "pass_revoked"  # its short code too
    new_code = app.get(f"/access/{new_token}").html.find(class_="pass-code").get_text(strip=True)
    assert new_code != code
    assert scan(app, host, code=passes.secret_for(app.app.registry.settings, new_token))["admitted"] == 1


# --- checking in --------------------------------------------------------------------


def test_a_scan_checks_the_guest_in_once_and_a_second_scan_says_when_and_by_whom(app, host, run_in_request, listener):
    guest, token, secret, code = said_yes(app, host)
    first = scan(app, host, code=secret, scan_id="door1-0001")
    assert first["outcome"] == "checked_in" and first["admitted"] == 1
    assert first["party"]["inside"] == 1 and first["counts"] == {"checked_in": 1, "expected": 1}
    again = scan(app, host, status=409, code=secret)["error"]
    assert again["code"] == "already_checked_in"
    at = scalar(app, run_in_request, select(Admission.admitted_at))
    london = at.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M")
    assert again["message"] == f"Already checked in at {london} by Sam.", "in the event's zone"
    # The same scan sent again gets the first answer and changes nothing.
    assert scan(app, host, code=secret, scan_id="door1-0001") == first
    assert admissions(app, run_in_request) == 1
    assert [event.data["guest_id"] for event in listener.named("guest.checked_in")] == [guest["id"]]
    audit = scalar(app, run_in_request, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "guest.checked_in"))
    assert audit == 1


def test_a_removed_guests_pass_is_unknown_at_the_door_until_the_undo(app, host, run_in_request):
    guest, _, secret, code = said_yes(app, host)
    app.delete(f"{host['url']}/guests/{guest['id']}", headers=host["ada"], status=204)
    for shown in ({"code": code}, {"code": secret}, {"guest_id": guest["id"]}):
        refused = scan(app, host, status=404, **shown)["error"]["code"]
        assert refused in ("unknown_pass", "guest_not_found"), shown
    assert admissions(app, run_in_request) == 0
    app.post_json(f"{host['url']}/guests/{guest['id']}/restore", {}, headers=host["ada"])
    assert scan(app, host, code=code)["outcome"] == "checked_in"


def test_the_typed_code_works_in_any_case_with_or_without_its_dash(app, host):
    _, _, _, code = said_yes(app, host)
    typed = " " + code.lower().replace("-", " ") + " "
    assert scan(app, host, code=typed)["outcome"] == "checked_in"


def test_plus_ones_come_in_with_the_guest_and_one_by_one_up_to_their_places(app, host, run_in_request):
    guest, _, secret, _ = said_yes(app, host, plus_ones=1, plus_ones_allowed=2)
    first = scan(app, host, code=secret)
    assert first["admitted"] == 2 and first["message"] == "Checked in: Grace Hopper with 1 guest."
    later = scan(app, host, guest_id=guest["id"], plus_ones=1)
    assert later["admitted"] == 1 and later["party"]["inside"] == 3
    full = scan(app, host, status=409, guest_id=guest["id"], plus_ones=1)["error"]
    assert full["code"] == "already_checked_in" and "No more of their guests" in full["message"]
    assert admissions(app, run_in_request, guest_id=uuid.UUID(guest["id"])) == 3


def test_every_attempt_is_in_the_access_log_refused_ones_too(app, host, run_in_request):
    guest, _, secret, _ = said_yes(app, host)
    scan(app, host, code=secret)
    scan(app, host, status=409, code=secret)
    scan(app, host, status=404, code="not-a-pass")
    rows = run_in_request(lambda r: r.db.execute(select(AccessEntry.kind, AccessEntry.outcome, AccessEntry.guest_id)
                                                  .where(AccessEntry.kind == "check_in")
                                                  .order_by(AccessEntry.at)).all(), app.app.registry)
    assert [(kind, outcome) for kind, outcome, _ in rows] == [("check_in", "ok")] * 2 + [("check_in", "unknown")]
    assert rows[0][2] == uuid.UUID(guest["id"])


def test_a_pass_of_another_event_gets_a_neutral_answer(app, host, run_in_request):
    other = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT, "name": "Other"},
                          headers=host["ada"]).json["event"]
    other_host = {**host, "url": f"/api/v1/events/{other['id']}"}
    _, _, secret, code = said_yes(app, other_host)
    refused = scan(app, host, status=409, code=secret)["error"]
    assert refused == {"code": "not_for_this_event", "message": "This pass is not for this event.",
                       "scan_id": refused["scan_id"], "admitted": 0, "party": None,
                       "counts": {"checked_in": 0, "expected": 0}}
    assert scan(app, host, status=404, code=code)["error"]["code"] == "unknown_pass"
    outcomes = run_in_request(lambda r: r.db.scalars(select(AccessEntry.outcome).where(
        AccessEntry.kind == "check_in").order_by(AccessEntry.at)).all(), app.app.registry)
    assert outcomes == ["wrong_event", "unknown"]
    assert admissions(app, run_in_request) == 0


@pytest.mark.parametrize("code, status, error", [
    ("", 422, "validation_failed"), ("x" * 65, 422, "validation_failed"), ("AAAAAAAA", 404, "unknown_pass"),
    ("IIIIIIII", 404, "unknown_pass"), ("' OR 1=1 --", 404, "unknown_pass"), ("A" * 26, 404, "unknown_pass"),
    ("\u0000" * 8, 400, "bad_request")])
def test_garbage_codes_are_refused_clearly(app, host, run_in_request, code, status, error):
    said_yes(app, host)
    assert scan(app, host, status=status, code=code)["error"]["code"] == error
    assert admissions(app, run_in_request) == 0


def test_a_cancelled_event_checks_nobody_in(app, host, run_in_request):
    guest, _, secret, _ = said_yes(app, host)
    app.patch_json(host["url"], {"status": "cancelled"}, headers=host["ada"])
    assert scan(app, host, status=409, code=secret)["error"]["code"] == "event_cancelled"
    assert scan(app, host, status=409, guest_id=guest["id"])["error"]["code"] == "event_cancelled"
    assert admissions(app, run_in_request) == 0


def test_staff_of_another_workspace_get_404_and_staff_here_may_check_in(app, host):
    _, _, secret, _ = said_yes(app, host)
    body = {"code": secret, "scan_id": "eve-scan-1"}
    assert app.post_json(f"{host['url']}/checkins", body, headers=host["eve"], status=404).json["error"]["code"] \
        == "not_found"
    scan(app, host, code=secret, who="sam")


@pytest.mark.parametrize("body, field", [
    ({"scan_id": "scan-0001"}, "code"),
    ({"scan_id": "scan-0001", "code": "ABCD-EFGH", "guest_id": str(uuid.uuid4())}, "code"),
    ({"code": "ABCD-EFGH"}, "scan_id"),
    ({"code": "ABCD-EFGH", "scan_id": "short"}, "scan_id"),
    ({"code": "ABCD-EFGH", "scan_id": "bad scan id!"}, "scan_id"),
    ({"code": "ABCD-EFGH", "scan_id": "scan-0001", "plus_ones": 21}, "plus_ones"),
    ({"code": "ABCD-EFGH", "scan_id": "scan-0001", "plus_ones": -1}, "plus_ones"),
    ({"guest_id": "not-a-uuid", "scan_id": "scan-0001"}, "guest_id"),
])
def test_bad_input_names_the_field(app, host, body, field):
    answer = app.post_json(f"{host['url']}/checkins", body, headers=host["sam"], status=422).json["error"]
    assert field in answer["fields"]


def test_a_guest_of_another_event_by_id_is_not_found(app, host):
    assert scan(app, host, status=404, guest_id=str(uuid.uuid4()))["error"]["code"] == "guest_not_found"


def test_open_flags_and_answers_other_than_yes_warn_the_door(app, host, run_in_request):
    guest, _, secret, _ = said_yes(app, host)
    run_in_request(lambda r: r.db.execute(update(Guest).values(open_flags=2)), app.app.registry)
    warnings = scan(app, host, code=secret)["party"]["warnings"]
    assert warnings == [("Grace Hopper's invitation has 2 open guard flags: it may have been shared. "
                        "Check who this is.")]
    pending = add_guest(app, host, name="Paul Pending", email="paul@example.com")
    assert scan(app, host, guest_id=pending["id"])["party"]["warnings"] == [
        "Paul Pending has not answered the invitation."]


def test_undo_within_five_minutes_and_not_after(app, host, run_in_request):
    _, _, secret, _ = said_yes(app, host)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    with time_machine.travel(start, tick=False):
        scan(app, host, code=secret, scan_id="scan-undo-1")
    with time_machine.travel(start + dt.timedelta(minutes=4), tick=False):
        undone = app.delete(f"{host['url']}/checkins/scan-undo-1", headers=host["sam"]).json
        assert undone["undone"] == 1
        assert app.delete(f"{host['url']}/checkins/scan-undo-1", headers=host["sam"]).json["undone"] == 0
        assert admissions(app, run_in_request) == 0
        scan(app, host, code=secret, scan_id="scan-undo-2")
    with time_machine.travel(start + dt.timedelta(minutes=10), tick=False):
        late = app.delete(f"{host['url']}/checkins/scan-undo-2", headers=host["sam"], status=409).json["error"]
        assert late["code"] == "undo_expired"
        assert (start + dt.timedelta(minutes=4)).astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") \
            in late["message"]
    app.delete(f"{host['url']}/checkins/never-scanned", headers=host["sam"], status=404)
    assert admissions(app, run_in_request) == 1


def test_search_by_name_needs_two_letters(app, host):
    said_yes(app, host)
    add_guest(app, host, name="Ada Byron", email="byron@example.com")
    assert app.get(f"{host['url']}/door/guests", {"q": "g"}, headers=host["sam"], status=400).json["error"]
    app.get(f"{host['url']}/door/guests", headers=host["sam"], status=400)
    found = app.get(f"{host['url']}/door/guests", {"q": "hop"}, headers=host["sam"]).json["guests"]
    assert [guest["name"] for guest in found] == ["Grace Hopper"]
    assert app.get(f"{host['url']}/door/guests", {"q": "%_"}, headers=host["sam"]).json["guests"] == []


def test_a_camera_frame_is_decoded_on_the_server(app, host):
    _, _, secret, _ = said_yes(app, host)
    buffer = io.BytesIO()
    segno.make_qr(secret, error="m").save(buffer, kind="png", scale=8, border=6)
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    url = f"{host['url']}/door/decode"
    assert app.post_json(url, {"image": image}, headers=host["sam"]).json == {"code": secret}
    blank = io.BytesIO()
    from PIL import Image

    Image.new("L", (64, 64), 255).save(blank, "PNG")
    empty = "data:image/png;base64," + base64.b64encode(blank.getvalue()).decode()
    assert app.post_json(url, {"image": empty}, headers=host["sam"]).json == {"code": None}
    for bad in ("data:text/plain;base64,aGk=", "data:image/png;base64,!!!", "data:image/png;base64,aGVsbG8="):
        assert "image" in app.post_json(url, {"image": bad}, headers=host["sam"], status=422).json["error"]["fields"]


def test_the_door_page_checks_in_by_code_and_shows_the_answer_with_undo(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    _, _, _, code = said_yes(app, host)
    run_in_request(lambda r: r.db.execute(update(Guest).values(open_flags=1)), app.app.registry)
    browser = signed_in(app, run_in_request, "sam@example.com")
    page = browser.get(f"/events/{host['event']['id']}/door")
    form = page.forms["door-code-form"]
    form["code"] = code
    result = form.submit().follow()
    assert "Checked in: Grace Hopper." in result.text and "1 open guard flag" in result.text
    # The same form sent again (a double tap) shows the same answer and lets nobody in twice.
    form.submit().follow()
    assert admissions(app, run_in_request) == 1
    undo = next(f for f in result.forms.values() if "undo" in f.action)
    assert "Undone" in undo.submit().follow().text
    assert admissions(app, run_in_request) == 0
    short = browser.get(f"/events/{host['event']['id']}/door", {"q": "G"}, status=400)
    assert "at least 2 letters" in short.text
    assert "Grace Hopper" in browser.get(f"/events/{host['event']['id']}/door", {"q": "gra"}).text
    assert csrf(page)


def test_twenty_doors_scanning_one_pass_at_once_let_the_party_in_once(app, host, run_in_request):
    """Threads against the same database: on PostgreSQL the scans race."""
    guest, _, secret, _ = said_yes(app, host, plus_ones=2)
    doors = 20
    answers = together([functools.partial(
        new_client(app.app, REMOTE_ADDR=f"198.51.100.{n + 1}").post_json, f"{host['url']}/checkins",
        {"code": secret, "scan_id": f"door-{n:04d}"}, headers=host["sam"], status="*") for n in range(doors)])
    assert sorted(answer.status_int for answer in answers) == [201] + [409] * (doors - 1)
    assert admissions(app, run_in_request) == 3, "the guest and both plus-ones, once each"


def test_the_same_scan_sent_by_many_threads_at_once_is_answered_alike(app, host, run_in_request):
    _, _, secret, _ = said_yes(app, host)
    answers = [(answer.status_int, answer.json) for answer in clicks(app, [lambda client: client.post_json(
        f"{host['url']}/checkins", {"code": secret, "scan_id": "one-scan-01"}, headers=host["sam"], status="*")] * 8)]
    assert {status for status, _ in answers} == {201}
    assert len({str(body) for _, body in answers}) == 1
    assert admissions(app, run_in_request) == 1
