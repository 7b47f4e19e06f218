"""Hosts who ask hear of answers by email: each as it comes, or a daily
digest at 08:00 in the event's time zone; once each, only while they are in
the workspace, never for an API key."""
import datetime as dt

import pytest
import time_machine
from sqlalchemy import delete, func, select, update

from guestguard.accounts.models import User
from guestguard.events.alerts import digest_due, send_digests
from guestguard.events.models import AnswerAlert
from guestguard.testing import (
    add_guest,
    csrf,
    event_host,
    inbox,
    issue,
    main_text,
    scalar,
    scripted,
    signed_in,
    together,
)
from guestguard.workspaces.models import Membership

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 2}


@pytest.fixture
def app(make_app):
    return make_app({"db.pool_size": "6"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def alerts_url(host):
    return f"{host['url']}/answer-alerts/me"


def subscribe(app, host, mode, who="ada", status=200):
    return app.put_json(alerts_url(host), {"mode": mode}, headers=host[who], status=status)


def answer(app, token, response, plus_ones=0):
    app.post_json(f"/api/v1/rsvp/{token}", {"response": response, "plus_ones": plus_ones})


def alerts_to(app, email):
    return [message for message in inbox(app, email) if message.subject.startswith("Midsummer Gala:")]


def test_each_answer_is_emailed_once_to_each_host_who_asked(app, run_in_request, host):
    assert app.get(alerts_url(host), headers=host["ada"]).json == {"mode": "off"}
    assert subscribe(app, host, "each").json == {"mode": "each"}
    assert subscribe(app, host, "each").json == {"mode": "each"}  # again: nothing changes
    subscribe(app, host, "each", who="sam")  # door staff see the guests too
    token = issue(app, host, add_guest(app, host))["token"]
    answer(app, token, "yes", 1)
    answer(app, token, "yes", 1)  # the same answer again is no news
    answer(app, token, "no")
    for email in ("ada@example.com", "sam@example.com"):
        assert [message.subject for message in alerts_to(app, email)] == [
            "Midsummer Gala: Grace Hopper changed their answer from yes to no",
            "Midsummer Gala: Grace Hopper answered yes, bringing 1 guest",
        ]
    latest = alerts_to(app, "ada@example.com")[0]
    assert f"/events/{host['event']['id']}/guests/" in latest.text and "See the guest" in latest.html
    assert scalar(app, run_in_request, select(func.count()).select_from(AnswerAlert)) == 2
    assert inbox(app, "eve@example.com") == []


def test_no_alerts_when_off_or_after_leaving_the_workspace(app, run_in_request, host):
    subscribe(app, host, "each")
    subscribe(app, host, "each", who="sam")
    sam = select(User.id).where(User.email == "sam@example.com").scalar_subquery()
    run_in_request(lambda r: r.db.execute(delete(Membership).where(Membership.user_id == sam)), app.app.registry)
    assert subscribe(app, host, "off").json == {"mode": "off"}
    answer(app, issue(app, host, add_guest(app, host))["token"], "maybe")
    assert alerts_to(app, "ada@example.com") == [] and alerts_to(app, "sam@example.com") == []


def test_who_may_ask_and_what_is_refused(app, run_in_request, host):
    refused = subscribe(app, host, "sometimes", status=422).json["error"]
    assert "mode" in refused["fields"]
    app.put_json(alerts_url(host), {"mode": "each"}, headers=host["eve"], status=404)
    key = app.post_json(f"/api/v1/workspaces/{host['workspace']}/api-keys", {"name": "k", "role": "admin"},
                        headers=host["ada"]).json["api_key"]["secret"]
    refused = app.put_json(alerts_url(host), {"mode": "each"}, headers={"Authorization": f"Bearer {key}"},
                           status=403).json["error"]
    assert "API key" in refused["message"]
    assert scalar(app, run_in_request, select(func.count()).select_from(AnswerAlert)) == 0


@pytest.mark.parametrize("now, through, due", [
    ("2030-06-10T07:04:00+00:00", "2030-06-09T07:05:00+00:00", True),    # 08:04 BST, last one yesterday
    ("2030-06-10T06:59:00+00:00", "2030-06-09T07:05:00+00:00", False),   # 07:59 BST: not yet
    ("2030-06-10T09:00:00+00:00", "2030-06-10T07:05:00+00:00", False),   # today's went
    ("2030-12-10T08:05:00+00:00", "2030-12-09T08:05:00+00:00", True),    # GMT in winter
    ("2030-12-10T07:59:00+00:00", "2030-12-09T08:05:00+00:00", False),
])
def test_the_digest_is_due_at_eight_in_the_events_zone(now, through, due):
    assert digest_due(dt.datetime.fromisoformat(now), "Europe/London", dt.datetime.fromisoformat(through)) is due


def run_digests(app, at: str) -> int:
    with time_machine.travel(dt.datetime.fromisoformat(at), tick=False), scripted(app.app.registry) as env:
        return send_digests(env["request"])


def daily_since(app, run_in_request, host, moment: dt.datetime) -> None:
    """Ada asks for the digest; it covers answers from ``moment`` on."""
    subscribe(app, host, "daily")
    run_in_request(lambda r: r.db.execute(update(AnswerAlert).values(digest_through=moment)), app.app.registry)


def test_a_daily_digest_lists_the_days_answers_once(app, run_in_request, host):
    grace = issue(app, host, add_guest(app, host))["token"]
    alan = issue(app, host, add_guest(app, host, name="Alan Turing", email="alan@example.com"))["token"]
    daily_since(app, run_in_request, host, dt.datetime(2030, 6, 9, 5, 0, tzinfo=dt.UTC))
    with time_machine.travel(dt.datetime(2030, 6, 9, 6, 0, tzinfo=dt.UTC)):  # 07:00 in London
        answer(app, grace, "yes", 2)
        answer(app, alan, "no")
    assert alerts_to(app, "ada@example.com") == []  # no email per answer
    assert run_digests(app, "2030-06-09T06:30:00+00:00") == 0  # 07:30: not yet
    assert run_digests(app, "2030-06-09T07:05:00+00:00") == 1
    [digest] = alerts_to(app, "ada@example.com")
    assert digest.subject == "Midsummer Gala: 2 new answers since yesterday"
    assert "- Grace Hopper: yes, bringing 2 guests\n- Alan Turing: no\n" in digest.text
    assert run_digests(app, "2030-06-09T08:05:00+00:00") == 0  # the day's digest went
    assert run_digests(app, "2030-06-10T07:05:00+00:00") == 0  # no answers since: no email
    assert len(alerts_to(app, "ada@example.com")) == 1


def test_two_workers_send_one_digest(app, run_in_request, host):
    token = issue(app, host, add_guest(app, host))["token"]
    daily_since(app, run_in_request, host, dt.datetime(2030, 6, 9, 5, 0, tzinfo=dt.UTC))
    with time_machine.travel(dt.datetime(2030, 6, 9, 6, 0, tzinfo=dt.UTC)):
        answer(app, token, "maybe")
    sent = together([lambda: run_digests(app, "2030-06-09T07:05:00+00:00")] * 2)
    assert sorted(sent) == [0, 1]
    assert len(alerts_to(app, "ada@example.com")) == 1


def test_the_event_page_sets_the_choice(app, run_in_request, host):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}")
    assert page.html.find("input", id="alerts-off").has_attr("checked")
    form = page.forms["alerts-form"]
    form["mode"] = "daily"
    saved = form.submit().follow()
    assert "You’ll get a digest of the day’s answers at 8:00 (event time)" in main_text(saved)
    assert saved.html.find("input", id="alerts-daily").has_attr("checked")
    refused = ada.post(f"/events/{host['event']['id']}/answer-alerts", {"csrf_token": csrf(saved), "mode": "x"})
    assert "Choose how to hear of answers" in refused.follow().html.select_one(".flash-error").get_text()
    assert app.get(alerts_url(host), headers=host["ada"]).json == {"mode": "daily"}
