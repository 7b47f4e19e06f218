"""The "please answer" nudge before the RSVP deadline, reminders carrying
the guest's pass as a QR code, and the event day's operator settings."""
import base64
import datetime as dt
import io
import re
import uuid

import pytest
from sqlalchemy import func, select, update

from guestguard.events.models import Guest
from guestguard.notifications.models import Notification
from guestguard.reminders import services
from guestguard.reminders.models import ScheduledMessage
from guestguard.testing import add_guest, dispatch_reminders, event_host, inbox, issue, scalar

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "venue": "Kew Gardens", "rsvp_deadline": "2030-06-14T23:59:00",
         "answer_nudge": "2d"}
DEADLINE = dt.datetime(2030, 6, 14, 22, 59, tzinfo=dt.UTC)  # 23:59 in London (BST)
NUDGE_TIME = DEADLINE - dt.timedelta(days=2)
WEEK_BEFORE = dt.datetime(2030, 6, 14, 18, 0, tzinfo=dt.UTC)


@pytest.fixture
def app(make_app, listener):
    return make_app({"db.pool_size": "8"}, plugins=[("listener", listener)])


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def invited(app, host, name="Pat Pending", email="pat@example.com"):
    guest = add_guest(app, host, name=name, email=email)
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    return guest


def nudges(app, run_in_request, guest_id=None):
    query = select(func.count()).select_from(Notification).where(Notification.template == "answer_nudge")
    if guest_id is not None:
        query = query.where(Notification.about["guest_id"].as_string() == str(guest_id))
    return scalar(app, run_in_request, query)


def rows(app, run_in_request):
    return run_in_request(lambda r: sorted(
        (row.rule, row.state, row.reason or "") for row in r.db.execute(
            select(ScheduledMessage.rule, ScheduledMessage.state, ScheduledMessage.reason)
            .where(ScheduledMessage.rule == services.NUDGE))), app.app.registry)


def test_invited_guests_who_have_not_answered_are_nudged_once(app, host, run_in_request, listener):
    pending = invited(app, host)
    answered = invited(app, host, "Ada Byron", "ada.byron@example.com")
    app.post_json(f"/api/v1/rsvp/{issue(app, host, answered)['token']}", {"response": "no"})
    add_guest(app, host, name="Never Invited", email="never@example.com")
    assert dispatch_reminders(app, NUDGE_TIME - dt.timedelta(minutes=1)).planned == 0, "not before its time"
    done = dispatch_reminders(app, NUDGE_TIME)
    assert (done.planned, done.sent) == (1, 1), "only the invited guest who has not answered"
    assert dispatch_reminders(app, NUDGE_TIME + dt.timedelta(minutes=5)).sent == 0, "a second run sends nothing again"
    app.patch_json(host["url"], {"answer_nudge": "1d"}, headers=host["ada"])
    assert dispatch_reminders(app, DEADLINE - dt.timedelta(days=1)).sent == 0, "a changed offset does not nudge again"
    [message] = [m for m in inbox(app, "pat@example.com") if "Please answer" in m.subject]
    assert "Will you come to Midsummer Gala?" in message.subject
    assert "Friday 14 June 2030, 23:59 BST" in message.text and "open the invitation" in message.text
    assert nudges(app, run_in_request, pending["id"]) == 1
    [event] = listener.named("reminder.sent")
    assert event.data["rule"] == "nudge" and event.data["guest_id"] == pending["id"]


def test_two_workers_planning_and_sending_at_once_nudge_each_guest_once(app, host, run_in_request):
    import threading

    guests = [invited(app, host, f"Guest {n:02}", f"guest{n}@example.com") for n in range(12)]
    barrier = threading.Barrier(2)
    results = []

    def worker():
        barrier.wait()
        results.append(dispatch_reminders(app, NUDGE_TIME, batch=3))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(result.planned for result in results) == 12, "planned once between them"
    assert sum(result.sent for result in results) == 12
    assert [nudges(app, run_in_request, guest["id"]) for guest in guests] == [1] * 12


def test_eligibility_is_checked_again_when_the_nudge_goes(app, host, run_in_request):
    answers = invited(app, host, "Ann Answers", "ann@example.com")
    unsubscribed = invited(app, host, "Uma Unsubscribed", "uma@example.com")
    bounced = invited(app, host, "Bob Bounced", "bob@example.com")
    invited(app, host)
    assert dispatch_reminders(app, NUDGE_TIME - dt.timedelta(minutes=1)).planned == 0
    run_in_request(lambda r: services.plan(r.ctx, NUDGE_TIME), app.app.registry)

    def change(request):
        from guestguard.notifications import suppression

        request.db.execute(update(Guest).where(Guest.id == uuid.UUID(answers["id"])).values(response="maybe"))
        suppression.suppress(request.ctx, "email", "uma@example.com", suppression.UNSUBSCRIBE, source="test",
                             workspace_id=uuid.UUID(host["workspace"]))
        suppression.suppress(request.ctx, "email", "bob@example.com", suppression.HARD_BOUNCE, source="test")

    run_in_request(change, app.app.registry)
    done = dispatch_reminders(app, NUDGE_TIME + dt.timedelta(minutes=1))
    assert (done.sent, done.skipped) == (1, 3)
    outcomes = sorted((state, reason.split(":")[0]) for _, state, reason in rows(app, run_in_request))
    assert outcomes == [("sent", ""), ("skipped", "the address is on the suppression list"),
                        ("skipped", "the address is on the suppression list"), ("skipped", "the guest has answered")]
    assert [nudges(app, run_in_request, guest["id"]) for guest in (answers, unsubscribed, bounced)] == [0, 0, 0]


def test_a_cancelled_event_or_a_removed_nudge_sends_none(app, host, run_in_request):
    invited(app, host)
    run_in_request(lambda r: services.plan(r.ctx, NUDGE_TIME), app.app.registry)
    app.patch_json(host["url"], {"answer_nudge": None}, headers=host["ada"])
    assert dispatch_reminders(app, NUDGE_TIME + dt.timedelta(minutes=1)).skipped == 1
    assert rows(app, run_in_request) == [("nudge", "skipped", "the host no longer sends this nudge")]
    app.patch_json(host["url"], {"answer_nudge": "1d"}, headers=host["ada"])
    second = invited(app, host, "Sal Second", "sal@example.com")
    run_in_request(lambda r: services.plan(r.ctx, DEADLINE - dt.timedelta(days=1)), app.app.registry)
    app.patch_json(host["url"], {"status": "cancelled"}, headers=host["ada"])
    assert dispatch_reminders(app, DEADLINE - dt.timedelta(days=1) + dt.timedelta(minutes=1)).sent == 0
    assert nudges(app, run_in_request, second["id"]) == 0


def test_a_moved_deadline_moves_the_nudge(app, host, run_in_request):
    invited(app, host)
    run_in_request(lambda r: services.plan(r.ctx, NUDGE_TIME), app.app.registry)
    app.patch_json(host["url"], {"rsvp_deadline": "2030-06-18T23:59:00"}, headers=host["ada"])
    done = dispatch_reminders(app, NUDGE_TIME + dt.timedelta(minutes=1))
    assert (done.sent, done.rescheduled) == (0, 1)
    assert dispatch_reminders(app, NUDGE_TIME + dt.timedelta(days=4)).sent == 1
    assert nudges(app, run_in_request) == 1


def test_a_nudge_found_too_late_is_missed(app, host, run_in_request):
    invited(app, host)
    run_in_request(lambda r: services.plan(r.ctx, NUDGE_TIME), app.app.registry)
    done = dispatch_reminders(app, NUDGE_TIME + dt.timedelta(minutes=361))
    assert (done.sent, done.missed) == (0, 1)
    late = NUDGE_TIME + dt.timedelta(minutes=361)
    assert dispatch_reminders(app, late).planned == 0, "nothing planned past the window"
    assert nudges(app, run_in_request) == 0


@pytest.mark.parametrize("nudge, problem", [
    ("-1d", "must be before the RSVP deadline"), ("2w", "like 7d or 3h"), ("61d", "at most 60 days"),
    ("1441h", "at most 1440 hours"), (7, "must be text"),
])
def test_a_bad_nudge_is_refused_naming_the_field(app, host, nudge, problem):
    answer = app.patch_json(host["url"], {"answer_nudge": nudge}, headers=host["ada"], status=422).json["error"]
    assert problem in answer["fields"]["answer_nudge"]


def test_the_host_sets_previews_and_tests_the_nudge_on_the_event_page(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    invited(app, host)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}")
    section = page.html.find(id="reminders")
    last = [cell.get_text(" ", strip=True) for cell in section.find("tbody").find_all("tr")[-1].find_all(["th", "td"])]
    assert last == ["please answer, 2 days before the RSVP deadline", "Wed 12 Jun, 23:59", "0", "0", "0"]
    preview = ada.get(f"/events/{host['event']['id']}", {"preview": "nudge"}).html.find(class_="reminder-preview")
    assert "as Pat Pending gets it" in preview.get_text() and "Please answer by" in preview.get_text()
    ada.post(f"/events/{host['event']['id']}/reminders/test", {"csrf_token": csrf(page), "kind": "nudge"},
             status=303)
    [test] = inbox(app, "ada@example.com")
    assert "Will you come to Midsummer Gala?" in test.subject and "This is a test" in test.text
    saved = ada.post(f"/events/{host['event']['id']}/reminders",
                     {"csrf_token": csrf(page), "reminders": "7d", "answer_nudge": "12h"}, status=303).follow()
    assert "please answer, 12 hours before the RSVP deadline" in saved.text
    refused = ada.post(f"/events/{host['event']['id']}/reminders",
                       {"csrf_token": csrf(page), "reminders": "7d", "answer_nudge": "soon"}, status=303).follow()
    assert "Reminders not changed" in refused.text
    cleared = ada.post(f"/events/{host['event']['id']}/reminders",
                       {"csrf_token": csrf(page), "reminders": "7d", "answer_nudge": ""}, status=303).follow()
    assert "please answer" not in cleared.html.find(class_="flash").get_text()
    api = app.get(host["url"], headers=host["ada"]).json["event"]
    assert api["answer_nudge"] is None and api["reminders"] == ["7d"]


# --- the pass in reminders ----------------------------------------------------------


def qr_content(html: str) -> str:
    """The QR code in a message's HTML, decoded as a door's camera would."""
    import zxingcpp
    from PIL import Image

    found = re.search(r'src="data:image/png;base64,([^"]+)"[^>]*alt="QR code of your pass"', html)
    assert found, "the message carries the pass as a QR image"
    image = Image.open(io.BytesIO(base64.b64decode(found.group(1))))
    [code] = zxingcpp.read_barcodes(image)
    return code.text


def test_a_reminder_carries_a_qr_that_opens_the_door_while_the_link_works(app, run_in_request):
    host = event_host(app, run_in_request, {**EVENT, "answer_nudge": None})
    guest = add_guest(app, host, name="Grace Hopper", email="grace@example.com")
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    assert dispatch_reminders(app, WEEK_BEFORE).sent == 1
    [reminder] = [m for m in inbox(app, "grace@example.com") if "coming up" in m.text]
    secret = qr_content(reminder.html)
    assert token not in secret and len(secret) == 26, "a random secret of 128 bits, never the invitation token"
    stored = run_in_request(lambda r: r.db.execute(select(Notification.sealed_context).where(
        Notification.template == "reminder")).scalar(), app.app.registry)
    assert stored is None, "the secret is not kept once the message went"
    url = f"{host['url']}/checkins"
    answer = app.post_json(url, {"code": secret, "scan_id": "reminder-qr-1"}, headers=host["sam"], status=201).json
    assert answer["party"]["name"] == "Grace Hopper" and answer["admitted"] == 1
    again = app.post_json(url, {"code": secret, "scan_id": "reminder-qr-2"}, headers=host["sam"], status=409).json
    assert again["error"]["code"] == "already_checked_in"
    issue(app, host, guest)  # a new link revokes the pass, and the reminder's QR with it
    app.delete(f"{url}/reminder-qr-1", headers=host["sam"])
    revoked = app.post_json(url, {"code": secret, "scan_id": "reminder-qr-3"}, headers=host["sam"], status=409).json
    assert revoked["error"]["code"] == "pass_revoked"


def test_a_reminders_qr_is_refused_at_another_events_door(app, run_in_request):
    host = event_host(app, run_in_request, {**EVENT, "answer_nudge": None})
    guest = add_guest(app, host)
    app.post_json(f"/api/v1/rsvp/{issue(app, host, guest)['token']}", {"response": "yes"})
    dispatch_reminders(app, WEEK_BEFORE)
    [reminder] = [m for m in inbox(app, "grace@example.com") if "coming up" in m.text]
    secret = qr_content(reminder.html)
    other = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT, "name": "Other"},
                          headers=host["ada"]).json["event"]
    answer = app.post_json(f"/api/v1/events/{other['id']}/checkins", {"code": secret, "scan_id": "elsewhere-1"},
                           headers=host["sam"], status=409).json["error"]
    assert answer["code"] == "not_for_this_event" and answer["party"] is None and "Grace" not in str(answer)


# --- the operator's settings --------------------------------------------------------


def test_the_operator_sets_the_reminder_limits(make_app, run_in_request):
    app = make_app({"reminders.max_per_event": "2", "reminders.max_days_before": "10"})
    host = event_host(app, run_in_request, {**EVENT, "answer_nudge": None})
    refused = app.patch_json(host["url"], {"reminders": ["7d", "3d", "1d"]}, headers=host["ada"],
                             status=422).json["error"]["fields"]
    assert refused == {"reminders": "at most 2 reminders"}
    far = app.patch_json(host["url"], {"reminders": ["11d"], "answer_nudge": "241h"}, headers=host["ada"],
                         status=422).json["error"]["fields"]
    assert "at most 10 days" in far["reminders"] and "at most 240 hours" in far["answer_nudge"]
    created = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT,
                                               "reminders": ["9d", "8d", "7d"]}, headers=host["ada"], status=422)
    assert created.json["error"]["fields"] == {"reminders": "at most 2 reminders"}


def test_the_operator_sets_the_late_window_and_the_batch(make_app, run_in_request):
    app = make_app({"reminders.late_window_minutes": "30", "reminders.batch_size": "2"})
    host = event_host(app, run_in_request, {**EVENT, "answer_nudge": None})
    for n in range(5):
        guest = add_guest(app, host, name=f"Guest {n}", email=f"guest{n}@example.com")
        app.post_json(f"/api/v1/rsvp/{issue(app, host, guest)['token']}", {"response": "yes"})
    run_in_request(lambda r: services.plan(r.ctx, WEEK_BEFORE), app.app.registry)
    batches = []
    import sqlalchemy

    def count(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO notifications"):
            batches.append(statement)

    engine = app.app.registry["db.engine"]
    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        done = dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(minutes=29))
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    assert done.sent == 5 and len(batches) == 3, "batches of two: 2, 2 and 1"
    late = dt.datetime(2030, 6, 20, 18, 31, tzinfo=dt.UTC)
    assert dispatch_reminders(app, late).planned == 0, "31 minutes late: none"


def test_without_an_rsvp_deadline_no_nudge_goes_and_the_page_says_so(app, run_in_request):
    from guestguard.testing import signed_in

    host = event_host(app, run_in_request, {key: value for key, value in EVENT.items() if key != "rsvp_deadline"})
    assert host["event"]["answer_nudge"] == "2d" and host["event"]["rsvp_deadline"] is None
    invited(app, host)
    assert dispatch_reminders(app, dt.datetime(2030, 6, 19, 18, 0, tzinfo=dt.UTC)).planned == 0
    assert app.get(f"{host['url']}/reminders", headers=host["ada"]).json["reminders"][-1] == {
        "rule": "nudge", "words": "please answer, 2 days before the RSVP deadline", "due_at": None,
        "counts": {"scheduled": 0, "sent": 0, "skipped": 0, "missed": 0}}
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}", {"preview": "nudge"})
    assert "no RSVP deadline: not sent" in page.html.find(id="reminders").get_text()
    preview = page.html.find(class_="reminder-preview").get_text()
    assert "Will you come to Midsummer Gala?" in preview and "answer by" not in preview


def test_a_guest_with_only_a_phone_is_nudged_by_text(make_app, run_in_request):
    app = make_app({"notifications.sms.provider": "console"})
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host, name="Tom Text", email=None, phone="+44 20 7946 0958")
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    assert dispatch_reminders(app, NUDGE_TIME).sent == 1
    [text] = run_in_request(lambda r: r.db.execute(select(Notification.channel).where(
        Notification.template == "answer_nudge")).all(), app.app.registry)
    assert text.channel == "sms"
    rendered = app.app.registry["notifications.renderer"].render("sms", "answer_nudge", {
        "event_name": "Midsummer Gala", "rsvp_deadline": DEADLINE.isoformat(), "timezone": "Europe/London"})
    assert rendered.text.startswith("Will you come to Midsummer Gala? Please answer the invitation by Fri 14 Jun")


def test_a_deadline_long_before_the_start_is_nudged_for(app, run_in_request):
    host = event_host(app, run_in_request, {**EVENT, "starts_at": "2030-12-21T19:00:00"})  # six months after
    guest = invited(app, host)
    assert dispatch_reminders(app, NUDGE_TIME).sent == 1
    assert nudges(app, run_in_request, guest["id"]) == 1


def test_a_text_past_the_plan_is_skipped_saying_why_and_the_batch_goes_on(make_app, run_in_request):
    app = make_app({"notifications.sms.provider": "console", "billing.enforce": "true"})  # Free: no texts
    host = event_host(app, run_in_request, EVENT)
    texted = add_guest(app, host, name="Tom Text", email=None, phone="+44 20 7946 0958")
    emailed = invited(app, host)
    run_in_request(lambda r: r.db.execute(update(Guest).where(Guest.id == uuid.UUID(texted["id"]))
                                          .values(invited_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))),
                   app.app.registry)
    done = dispatch_reminders(app, NUDGE_TIME)
    assert (done.sent, done.skipped) == (1, 1)
    assert [nudges(app, run_in_request, guest["id"]) for guest in (texted, emailed)] == [0, 1]
    [skipped] = [reason for _, state, reason in rows(app, run_in_request) if state == "skipped"]
    assert "text messages" in skipped and "Upgrade the plan" in skipped
