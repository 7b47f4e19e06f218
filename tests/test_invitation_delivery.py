"""What the host sees of each invitation: the state of each guest's latest
invitation on the guest list, the guest's page and in the API, the event's
summary, and the workspace's daily counts, as provider reports, opens and
unsubscribes arrive (repeated and out of order)."""
from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
import time_machine
from sqlalchemy import select, update

from guestguard.events.deliveries import (
    BOUNCED,
    COMPLAINED,
    DELIVERED,
    FAILED,
    NOT_INVITED,
    OPENED,
    QUEUED,
    SENT,
    SUPPRESSED,
    UNSUBSCRIBED,
    held_words,
    state_of,
)
from guestguard.events.invitations import RESEND_AFTER
from guestguard.notifications.delivery import advance_delivery
from guestguard.notifications.models import DeliveryDay, Notification
from guestguard.notifications.suppression import REASONS, STOP, UNSUBSCRIBE
from guestguard.testing import add_guest, event_host, in_request, inbox, signed_in

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "timezone": "Europe/London"}


def facts(**given):
    return {"invited": True, "opened": False, "status": "sent", "delivery_state": "sent", "detail": None,
            "channel": "email", "stopped": False, **given}


@pytest.mark.parametrize("given, state", [
    ({"invited": False}, NOT_INVITED),
    ({"status": "pending", "delivery_state": "queued"}, QUEUED),
    ({}, SENT),
    ({"status": None, "delivery_state": None, "channel": None}, SENT),  # its record erased since
    ({"delivery_state": "delivered"}, DELIVERED),
    ({"delivery_state": "delivered", "opened": True}, OPENED),
    ({"opened": True}, OPENED),
    ({"delivery_state": "bounced", "opened": True}, BOUNCED),
    ({"delivery_state": "complained", "stopped": True}, COMPLAINED),
    ({"delivery_state": "failed", "detail": "permanent: 550 no such user"}, FAILED),
    ({"delivery_state": "suppressed", "detail": REASONS["hard_bounce"]}, SUPPRESSED),
    ({"delivery_state": "suppressed", "detail": REASONS[UNSUBSCRIBE]}, UNSUBSCRIBED),
    ({"delivery_state": "suppressed", "detail": REASONS[STOP], "channel": "sms"}, UNSUBSCRIBED),
    ({"delivery_state": "delivered", "opened": True, "stopped": True}, UNSUBSCRIBED),
])
def test_the_state_a_host_sees_of_its_facts(given, state):
    assert state_of(**facts(**given)).state == state


def test_each_trouble_says_why_in_words():
    assert state_of(**facts(delivery_state="failed", detail="permanent: 550 no such user")).reason == \
        "it could not be delivered: 550 no such user"
    assert state_of(**facts(delivery_state="bounced", detail="Permanent: General")).reason == \
        "the address does not exist or refuses mail (Permanent: General)"
    assert "reported it as spam" in state_of(**facts(delivery_state="complained")).reason
    assert state_of(**facts(stopped=True)).reason == REASONS[UNSUBSCRIBE]
    assert state_of(**facts(stopped=True, channel="sms")).reason == REASONS[STOP]
    assert state_of(**facts()).reason is None and not state_of(**facts()).trouble
    waiting = state_of(**facts(status="pending", delivery_state="queued", held="quiet hours; it goes out at 08:00"))
    assert (waiting.state, waiting.label, waiting.reason) == ("held", "Held", "quiet hours; it goes out at 08:00")
    assert not waiting.trouble
    assert held_words("transient: 421 try later", "UTC") is None  # a retry is not a hold
    assert held_words("held until 2030-06-21T07:00:00+00:00: the circuit breaker of ses is open", "Europe/London") \
        == "the circuit breaker of ses is open; it goes out at Fri 21 Jun 2030, 08:00 BST"
    assert state_of(**facts(delivery_state="bounced")).trouble


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def invite(app, host, name, email):
    guest = add_guest(app, host, name=name, email=email)
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    return guest


def report(app, email, state, detail=None, at=None):
    """The provider's report about the invitation it delivered to ``email``."""
    notification_id = in_request(app.app.registry, lambda request: request.db.scalar(
        select(Notification.id).where(Notification.recipient == email).order_by(Notification.created_at.desc())))
    return in_request(app.app.registry, lambda request: advance_delivery(
        request.ctx, "console", f"console-{notification_id}", state, detail, at))


def rows(page) -> dict[str, str]:
    return {item.find("a").get_text(strip=True): item.get_text(" ", strip=True)
            for item in page.html.select(".guest-list .row")}


def test_the_guest_list_the_guest_page_and_the_api_show_each_invitation(app, host, run_in_request):
    people = {"Grace": "grace@example.com", "Alan": "alan@example.com", "Ada": "ada.l@example.com",
              "Edsger": "edsger@example.com", "Barbara": "barbara@example.com"}
    guests = {name: invite(app, host, name, email) for name, email in people.items()}
    add_guest(app, host, name="Tony", email="tony@example.com")
    report(app, people["Alan"], DELIVERED)
    report(app, people["Ada"], BOUNCED, "Permanent: General")
    report(app, people["Edsger"], DELIVERED)
    report(app, people["Edsger"], COMPLAINED)
    link = re.search(r"/access/\S+", inbox(app, people["Barbara"])[0].text).group(0)
    app.get(link, extra_environ={"HTTP_USER_AGENT": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
                                 "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"})
    unsubscribe = inbox(app, people["Grace"])[0].unsubscribe_url.removeprefix("http://guestguard.test")
    app.post(unsubscribe, {"List-Unsubscribe": "One-Click"})

    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{host['event']['id']}")
    listed = rows(page)
    assert listed["Alan"].endswith("Delivered by email")
    assert listed["Tony"].endswith("Not invited")
    assert "Bounced: the address does not exist or refuses mail (Permanent: General)." in listed["Ada"]
    assert "Marked as spam: the guest reported it as spam" in listed["Edsger"]
    assert "Opened" in listed["Barbara"]
    assert "Unsubscribed: the recipient unsubscribed from this host's messages." in listed["Grace"]
    summary = page.html.select_one(".delivery-summary").get_text(" ", strip=True)
    assert summary == ("Invitations: 1 delivered · 1 opened · 1 bounced · 1 marked as spam · 1 unsubscribed")

    guest_page = browser.get(f"/events/{host['event']['id']}/guests/{guests['Ada']['id']}")
    assert "by email · Bounced: the address does not exist" in guest_page.html.select_one("dl.meta").text

    api = {guest["name"]: guest["delivery"] for guest in
           app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]}
    assert api["Alan"] == {"state": "delivered", "label": "Delivered", "channel": "email", "reason": None}
    assert api["Tony"] == {"state": "not_invited", "label": "Not invited", "channel": None, "reason": None}
    assert (api["Ada"]["state"], api["Grace"]["state"], api["Barbara"]["state"]) == (
        "bounced", "unsubscribed", "opened")
    one = app.get(f"{host['url']}/guests/{guests['Edsger']['id']}", headers=host["ada"]).json["guest"]
    assert one["delivery"]["state"] == "complained"


def test_a_new_invitation_is_the_one_shown(app, host, run_in_request):
    invite(app, host, "Grace", "grace@example.com")
    report(app, "grace@example.com", BOUNCED)
    grace = app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"][0]
    assert grace["delivery"]["state"] == "bounced"
    app.patch_json(f"{host['url']}/guests/{grace['id']}", {"email": "grace.h@example.com"}, headers=host["ada"])
    with time_machine.travel(dt.datetime.now(dt.UTC) + RESEND_AFTER):
        app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    again = app.get(f"{host['url']}/guests/{grace['id']}", headers=host["ada"]).json["guest"]
    assert again["delivery"]["state"] == "sent"


def days(app):
    return in_request(app.app.registry, lambda request: [
        (row.channel, row.sent, row.delivered, row.bounced, row.complained, row.failed, row.suppressed)
        for row in request.db.scalars(select(DeliveryDay))])


def test_the_workspace_counts_each_message_once_per_state_and_day(app, host):
    guests = {name: invite(app, host, name, f"{name}@example.com") for name in ("grace", "alan", "ada")}
    report(app, "grace@example.com", DELIVERED)
    report(app, "grace@example.com", DELIVERED)  # repeated
    report(app, "alan@example.com", BOUNCED)
    report(app, "alan@example.com", DELIVERED)  # late, and behind a bounce
    report(app, "alan@example.com", SENT)
    assert days(app) == [("email", 3, 1, 1, 0, 0, 0)]
    with time_machine.travel(dt.datetime.now(dt.UTC) + RESEND_AFTER):  # suppressed by the bounce
        app.post_json(f"{host['url']}/guests/{guests['alan']['id']}/send", {}, headers=host["ada"], status=202)
    assert days(app) == [("email", 3, 1, 1, 0, 0, 1)]


def test_a_providers_sent_report_moves_the_state_but_counts_nothing(app, host):
    """A send counts once, when its success is recorded: a provider's "sent"
    reaching a message still queued (as one arriving before the outcome's
    record would) moves its state and adds no second count."""
    invite(app, host, "grace", "grace@example.com")
    in_request(app.app.registry, lambda request: request.db.execute(
        update(Notification).values(delivery_state=QUEUED)))
    assert report(app, "grace@example.com", SENT).endswith("queued -> sent")
    assert days(app) == [("email", 1, 0, 0, 0, 0, 0)]


def test_a_report_counts_on_the_day_it_happened(app, host):
    invite(app, host, "grace", "grace@example.com")
    report(app, "grace@example.com", DELIVERED, at=dt.datetime(2030, 1, 2, 23, 30, tzinfo=dt.UTC))
    counted = in_request(app.app.registry, lambda request: {
        row.day: (row.sent, row.delivered) for row in request.db.scalars(select(DeliveryDay))})
    assert counted == {dt.datetime.now(dt.UTC).date(): (1, 0), dt.date(2030, 1, 2): (0, 1)}


def test_account_mail_is_not_counted(app):
    from guestguard.testing import signup

    signup(app, email="lin@example.com")
    assert days(app) == []


def test_two_reports_of_one_delivery_at_once_count_it_once(app, host):
    invite(app, host, "grace", "grace@example.com")
    errors = []

    def deliver():
        try:
            report(app, "grace@example.com", DELIVERED)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert days(app) == [("email", 1, 1, 0, 0, 0, 0)]


def test_the_api_gives_the_workspaces_days_newest_first(app, host):
    invite(app, host, "grace", "grace@example.com")
    report(app, "grace@example.com", DELIVERED, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    deliveries = f"/api/v1/workspaces/{host['workspace']}/deliveries"
    today = dt.datetime.now(dt.UTC).date()
    days_ = app.get(deliveries, headers=host["ada"]).json["days"]
    assert [(day["day"], day["sent"], day["delivered"]) for day in days_] == [
        (today.isoformat(), 1, 0), ((today - dt.timedelta(days=3)).isoformat(), 0, 1)]
    assert len(app.get(deliveries, {"days": 3}, headers=host["ada"]).json["days"]) == 1
    for wrong, problem in (("0", "greater than or equal to 1"), ("367", "less than or equal to 366"),
                           ("many", "a whole number")):
        refused = app.get(deliveries, {"days": wrong}, headers=host["ada"], status=400).json["error"]
        assert refused["message"] == f"days must be {problem}."
    assert app.get(deliveries, headers=host["eve"], status=404)
