"""Reminders on scheduled messages: planned once per guest and reminder,
claimed once however many workers run, checked again at send time, moved
with the event, never late by more than the window, and resumed after a
crash without duplicates."""
import datetime as dt
import threading
import uuid

import pytest
import sqlalchemy
from sqlalchemy import func, select, update

from guestguard.events.models import Guest
from guestguard.notifications.models import Notification
from guestguard.reminders import services
from guestguard.reminders.models import ScheduledMessage
from guestguard.testing import add_guest, dispatch_reminders, event_host, inbox, issue, scalar

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "venue": "Kew Gardens"}
STARTS = dt.datetime(2030, 6, 21, 18, 0, tzinfo=dt.UTC)  # 19:00 in London (BST)
WEEK_BEFORE = STARTS - dt.timedelta(days=7)
DAY_BEFORE = STARTS - dt.timedelta(days=1)
LATE = dt.timedelta(minutes=360)  # reminders.late_window_minutes


@pytest.fixture
def app(make_app, listener):
    return make_app({"db.pool_size": "8"}, plugins=[("listener", listener)])


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def plan(app, run_in_request, now):
    return run_in_request(lambda request: services.plan(request.ctx, now), app.app.registry)


def answered(app, host, response, name="Grace Hopper", email="grace@example.com"):
    guest = add_guest(app, host, name=name, email=email)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": response})
    return guest


def reminders_sent(app, run_in_request, guest_id=None):
    query = select(func.count()).select_from(Notification).where(Notification.template == "reminder")
    if guest_id is not None:
        query = query.where(Notification.about["guest_id"].as_string() == str(guest_id))
    return scalar(app, run_in_request, query)


def states(app, run_in_request):
    return run_in_request(lambda r: sorted(r.db.execute(select(ScheduledMessage.rule, ScheduledMessage.state))
                                           .all()), app.app.registry)


def test_yes_and_maybe_guests_get_each_reminder_once(app, host, run_in_request, listener):
    yes = answered(app, host, "yes")
    maybe = answered(app, host, "maybe", "Ada Byron", "ada.byron@example.com")
    answered(app, host, "no", "Nora No", "nora@example.com")
    add_guest(app, host, name="Pat Pending", email="pat@example.com")
    assert host["event"]["reminders"] == ["7d", "1d"], "the default"
    assert dispatch_reminders(app, WEEK_BEFORE - dt.timedelta(minutes=1)).sent == 0, "not before its time"
    done = dispatch_reminders(app, WEEK_BEFORE)
    assert (done.planned, done.sent) == (2, 2)
    assert dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(minutes=1)).sent == 0, "a second run sends nothing again"
    [message] = [m for m in inbox(app, "grace@example.com") if "coming up" in m.text]
    assert message.subject.startswith("Midsummer Gala is ")
    assert "Your pass for the door" in message.text, "the yes guest's short code rides along"
    [maybe_message] = [m for m in inbox(app, "ada.byron@example.com") if "coming up" in m.text]
    assert maybe_message.subject.startswith("Will you come?") and "pass" not in maybe_message.text
    dispatch_reminders(app, DAY_BEFORE + dt.timedelta(minutes=3))
    assert reminders_sent(app, run_in_request, yes["id"]) == 2 and reminders_sent(app, run_in_request, maybe["id"]) == 2
    assert states(app, run_in_request) == [("1d", "sent")] * 2 + [("7d", "sent")] * 2
    assert len(listener.named("reminder.sent")) == 4


def test_days_before_keep_the_wall_clock_time_across_a_clock_change(app, run_in_request):
    host = event_host(app, run_in_request, {**EVENT, "starts_at": "2030-04-02T19:00:00"})  # BST; GMT a week before
    answered(app, host, "yes")
    starts = dt.datetime(2030, 4, 2, 18, 0, tzinfo=dt.UTC)
    week_before = dt.datetime(2030, 3, 26, 19, 0, tzinfo=dt.UTC)  # 19:00 GMT: not 168 hours before
    assert services.due_at(starts, "Europe/London", "7d") == week_before
    assert services.due_at(starts, "Europe/London", "168h") == week_before - dt.timedelta(hours=1)
    assert dispatch_reminders(app, week_before - dt.timedelta(minutes=30)).sent == 0
    assert dispatch_reminders(app, week_before).sent == 1


def test_guests_added_or_answering_after_a_reminder_was_due_are_not_reminded_for_it(app, host, run_in_request):
    answered(app, host, "yes")
    late = answered(app, host, "yes", "Lee Late", "lee@example.com")
    after = WEEK_BEFORE + dt.timedelta(minutes=10)
    run_in_request(lambda r: r.db.execute(update(Guest).where(Guest.id == uuid.UUID(late["id"]))
                                          .values(created_at=after, responded_at=after)), app.app.registry)
    assert dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(minutes=20)).sent == 1
    assert reminders_sent(app, run_in_request, late["id"]) == 0
    dispatch_reminders(app, DAY_BEFORE)
    assert reminders_sent(app, run_in_request, late["id"]) == 1, "the next reminder finds them"


def test_a_time_change_moves_planned_reminders(app, host, run_in_request):
    answered(app, host, "yes")
    assert plan(app, run_in_request, WEEK_BEFORE) == 1
    app.patch_json(host["url"], {"starts_at": "2030-06-28T19:00:00"}, headers=host["ada"])
    done = dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(minutes=1))
    assert (done.sent, done.rescheduled) == (0, 1)
    assert dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(days=7)).sent == 1
    assert reminders_sent(app, run_in_request) == 1


def test_a_reminder_found_too_late_is_missed_not_sent(app, host, run_in_request):
    answered(app, host, "yes")
    assert plan(app, run_in_request, WEEK_BEFORE) == 1
    done = dispatch_reminders(app, WEEK_BEFORE + LATE + dt.timedelta(minutes=1))
    assert (done.sent, done.missed) == (0, 1)
    assert states(app, run_in_request) == [("7d", "missed")]
    # A worker down for the whole window plans nothing for it at all.
    assert dispatch_reminders(app, DAY_BEFORE + LATE + dt.timedelta(minutes=1)).planned == 0
    assert reminders_sent(app, run_in_request) == 0


def test_eligibility_is_checked_again_when_sending(app, host, run_in_request):
    guest = answered(app, host, "yes")
    answered(app, host, "yes", "Ada Byron", "ada.byron@example.com")
    plan(app, run_in_request, WEEK_BEFORE)
    run_in_request(lambda r: r.db.execute(update(Guest).where(Guest.id == uuid.UUID(guest["id"]))
                                          .values(response="no")), app.app.registry)
    done = dispatch_reminders(app, WEEK_BEFORE)
    assert (done.sent, done.skipped) == (1, 1)
    reasons = run_in_request(lambda r: r.db.scalars(select(ScheduledMessage.reason).where(
        ScheduledMessage.state == "skipped")).all(), app.app.registry)
    assert reasons == ["the guest's answer is no longer yes or maybe"]
    plan(app, run_in_request, DAY_BEFORE)
    app.patch_json(host["url"], {"status": "cancelled"}, headers=host["ada"])
    assert dispatch_reminders(app, DAY_BEFORE).sent == 0


def test_a_crash_mid_batch_is_resumed_without_duplicates(app, host, run_in_request):
    guests = [answered(app, host, "yes", f"Guest {n}", f"guest{n}@example.com") for n in range(5)]
    engine = app.app.registry["db.engine"]
    seen = {"notifications": 0, "rows": 0}

    def connection_lost(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO notifications"):
            seen["notifications"] += 1
        if statement.startswith("UPDATE scheduled_messages"):
            seen["rows"] += 1
            if seen["rows"] == 2:  # the second batch of two, its messages queued, marking its rows sent
                assert seen["notifications"] == 2
                raise sqlalchemy.exc.OperationalError(statement, parameters, Exception("server closed the connection"))

    sqlalchemy.event.listen(engine, "before_cursor_execute", connection_lost)
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            dispatch_reminders(app, WEEK_BEFORE, batch=2)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", connection_lost)
    assert reminders_sent(app, run_in_request) == 2, "the first batch committed; the second rolled back whole"
    assert dispatch_reminders(app, WEEK_BEFORE + dt.timedelta(minutes=1), batch=2).sent == 3
    assert [reminders_sent(app, run_in_request, guest["id"]) for guest in guests] == [1] * 5


def test_two_workers_at_once_send_each_reminder_once(app, host, run_in_request):
    guests = [answered(app, host, "yes", f"Guest {n:02}", f"guest{n}@example.com") for n in range(24)]
    plan(app, run_in_request, WEEK_BEFORE)
    barrier = threading.Barrier(2)
    results = []

    def worker():
        barrier.wait()
        results.append(dispatch_reminders(app, WEEK_BEFORE, batch=5))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(result.sent for result in results) == 24
    assert [reminders_sent(app, run_in_request, guest["id"]) for guest in guests] == [1] * 24


@pytest.mark.parametrize("reminders, problem", [
    (["-1d"], "must be before the event starts"), (["0d"], "like 7d or 3h"), (["61d"], "at most 60 days"),
    (["1w"], "like 7d or 3h"), (["7d", "6d", "5d", "4d", "3d", "2d"], "at most 5 reminders"),
    ("7d", "list"),
])
def test_bad_reminders_are_refused_naming_the_field(app, host, reminders, problem):
    answer = app.patch_json(host["url"], {"reminders": reminders}, headers=host["ada"], status=422).json["error"]
    assert problem in answer["fields"]["reminders"]


def test_reminders_are_stored_earliest_first_and_none_sends_none(app, host, run_in_request):
    event = app.patch_json(host["url"], {"reminders": ["3h", " 7D ", "3h"]}, headers=host["ada"]).json["event"]
    assert event["reminders"] == ["7d", "3h"]
    answered(app, host, "yes")
    app.patch_json(host["url"], {"reminders": []}, headers=host["ada"])
    assert dispatch_reminders(app, WEEK_BEFORE).planned == 0


def test_an_event_cannot_be_moved_into_the_past(app, host):
    answer = app.patch_json(host["url"], {"starts_at": "2020-01-01T19:00:00"}, headers=host["ada"],
                            status=422).json["error"]
    assert answer["fields"] == {"starts_at": "is in the past: an event can only be moved to a time to come"}


def test_the_event_page_lists_reminders_previews_and_sends_a_test(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    answered(app, host, "yes")
    dispatch_reminders(app, WEEK_BEFORE)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}")
    section = page.html.find(id="reminders")
    rows = [[cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])]
            for row in section.find("tbody").find_all("tr")]
    assert rows == [["7 days before", "Fri 14 Jun, 19:00", "1", "0", "0"],
                    ["1 day before", "Thu 20 Jun, 19:00", "0", "0", "0"]]
    preview = ada.get(f"/events/{host['event']['id']}", {"preview": "reminder"}).html.find(class_="reminder-preview")
    assert "as Grace Hopper gets it" in preview.get_text() and "Midsummer Gala is coming up" in preview.get_text()
    ada.post(f"/events/{host['event']['id']}/reminders/test", {"csrf_token": csrf(page)}, status=303)
    [test] = inbox(app, "ada@example.com")
    assert "ABCD-EFGH" in test.text and 'alt="QR code of your pass"' in test.html, "a sample pass, QR included"
    saved = ada.post(f"/events/{host['event']['id']}/reminders", {"csrf_token": csrf(page), "reminders": "2d, 4h"},
                     status=303).follow()
    assert "Reminders saved: 2 days before, 4 hours before." in saved.text
    refused = ada.post(f"/events/{host['event']['id']}/reminders", {"csrf_token": csrf(page), "reminders": "-2d"},
                       status=303).follow()
    assert "Reminders not changed" in refused.text and "must be before the event starts" in refused.text
    api = app.get(f"{host['url']}/reminders", headers=host["sam"]).json["reminders"]
    assert [(item["rule"], item["counts"]["sent"]) for item in api] == [("2d", 0), ("4h", 0), ("7d", 1)]


# --- change notices ----------------------------------------------------------------


def calendar_of(app, token):
    return app.get(f"/access/{token}/event.ics").text


def test_a_time_change_tells_yes_and_maybe_guests_once_and_calendars_update(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    answered(app, host, "maybe", "Ada Byron", "ada.byron@example.com")
    answered(app, host, "no", "Nora No", "nora@example.com")
    before = calendar_of(app, token)
    assert "SEQUENCE:0" in before
    url = f"{host['url']}/change-notice"
    assert app.get(url, headers=host["ada"]).json["pending"] is False
    app.patch_json(host["url"], {"name": "Midsummer Ball"}, headers=host["ada"])
    assert app.get(url, headers=host["ada"]).json["pending"] is False, "a new name moves no calendar"
    app.patch_json(host["url"], {"starts_at": "2030-06-22T20:00:00", "venue": "Kew Palace"}, headers=host["ada"])
    preview = app.get(url, headers=host["ada"]).json
    assert preview["pending"] and [r["name"] for r in preview["recipients"]] == ["Ada Byron", "Grace Hopper"]
    after = calendar_of(app, token)
    uid = [line for line in before.splitlines() if line.startswith("UID:")]
    assert uid == [line for line in after.splitlines() if line.startswith("UID:")] and "SEQUENCE:1" in after
    app.get(url, headers=host["sam"], status=403)
    assert app.post_json(url, {}, headers=host["ada"], status=202).json == {"queued": 2, "skipped": []}
    assert app.post_json(url, {}, headers=host["ada"], status=409).json["error"]["code"] == "nothing_to_tell"
    [notice] = [m for m in inbox(app, "grace@example.com") if "has changed" in m.subject]
    assert ("Kew Palace" in notice.text and "Sat 22 June 2030" in notice.subject + notice.text) or "22" in notice.text
    assert not [m for m in inbox(app, "nora@example.com") if "has changed" in m.subject]


def test_a_notice_sent_twice_at_once_reaches_each_guest_once(app, host, run_in_request):
    for n in range(6):
        answered(app, host, "yes", f"Guest {n}", f"guest{n}@example.com")
    app.patch_json(host["url"], {"venue": "Kew Palace"}, headers=host["ada"])
    barrier = threading.Barrier(2)
    statuses = []

    def click():
        from guestguard.testing import new_client

        client = new_client(app.app)
        barrier.wait()
        statuses.append(client.post_json(f"{host['url']}/change-notice", {}, headers=host["ada"],
                                         status="*").status_int)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [202, 409]
    count = scalar(app, run_in_request, select(func.count()).select_from(Notification).where(
        Notification.template == "change_notice"))
    assert count == 6


def test_cancelling_is_confirmed_on_the_event_page_and_the_calendar_says_cancelled(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    app.patch_json(host["url"], {"status": "cancelled"}, headers=host["ada"])
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}")
    card = page.html.find(id="change-notice")
    assert "You cancelled this event: tell your guests?" in card.get_text(" ", strip=True)
    assert [li.get_text() for li in card.find_all("li")] == ["Grace Hopper"]
    done = ada.post(f"/events/{host['event']['id']}/change-notice", {"csrf_token": csrf(page), "action": "send"},
                    status=303).follow()
    assert "1 guest will be told." in done.text and done.html.find(id="change-notice") is None
    [notice] = [m for m in inbox(app, "grace@example.com") if m.subject.startswith("Cancelled")]
    assert "will not take place" in notice.text
    ics = calendar_of(app, token)
    assert "STATUS:CANCELLED" in ics and "SEQUENCE:1" in ics


def test_the_host_may_choose_not_to_tell(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    answered(app, host, "yes")
    app.patch_json(host["url"], {"venue": "Kew Palace"}, headers=host["ada"])
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}")
    ada.post(f"/events/{host['event']['id']}/change-notice", {"csrf_token": csrf(page), "action": "dismiss"},
             status=303)
    assert ada.get(f"/events/{host['event']['id']}").html.find(id="change-notice") is None
    assert app.get(f"{host['url']}/change-notice", headers=host["ada"]).json["pending"] is False
