"""Before invitations go out, the host sees what will happen: how many by
email and by text, who is skipped and why, the message as guests read it,
the invitation page as guests see it, and a test sent to themselves."""
import functools

import pytest
from sqlalchemy import func, select

from guestguard.audit.models import AuditEvent
from guestguard.events.models import Guest, InvitationLink
from guestguard.notifications.models import Notification
from guestguard.testing import add_guest, csrf, event_host, inbox, main_text, new_client, scalar, signed_in, together

EVENT = {"name": "Tom & Jerry's <b>Supper</b>", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "timezone": "Europe/London", "venue": "Kew Gardens", "host_name": "Hana Host", "default_plus_ones": 2}


@pytest.fixture
def app(make_app):
    return make_app({"db.pool_size": "6"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


@pytest.fixture
def ada(app, run_in_request, host):
    return signed_in(app, run_in_request, "ada@example.com")


def count(app, run_in_request, model, *where):
    return scalar(app, run_in_request, select(func.count()).select_from(model).where(*where))


def words(page) -> str:
    return " ".join(main_text(page).split())


def send_page(ada, host):
    return ada.get(f"/events/{host['event']['id']}/send-invitations")


def test_the_preview_counts_by_channel_names_the_skipped_and_stores_nothing(app, run_in_request, host, ada):
    add_guest(app, host, name="Grace Hopper", email="grace@example.com")
    add_guest(app, host, name="Alan Turing", email=None, phone="+12125550123")
    add_guest(app, host, name="Ada <script>", email="ada.l@example.com")
    add_guest(app, host, name="Nobody Known", email=None)
    page = send_page(ada, host)
    text = words(page)
    assert "3 guests not invited yet: 2 by email, 1 by text messages." in text
    assert "Not sent to 1 guest: no email address or phone number. Nobody Known." in text
    assert page.html.find("button", string="Send 3 invitations")
    assert page.html.select_one(".preview-subject").get_text(" ", strip=True) == (
        "Subject: Hana Host invites you to Tom & Jerry's <b>Supper</b>")
    email, sms = [body.get_text() for body in page.html.select("pre.preview-body")]
    assert email.startswith("Hello Ada <script>,")  # the first guest by name, as text
    assert "<script>" not in page.text and "&lt;b&gt;Supper" in page.text
    preview = f"http://guestguard.test/events/{host['event']['id']}/invitation-preview"
    assert f"{preview}?answer=yes" in email and "(each guest's own unsubscribe link)" in email
    assert sms.startswith("Alan Turing, Hana Host invites you to") and preview in sms
    # looking sends nothing, issues no link and invites nobody
    assert count(app, run_in_request, Notification, Notification.template == "invitation") == 0
    assert count(app, run_in_request, InvitationLink) == 0
    assert count(app, run_in_request, Guest, Guest.invited_at.is_not(None)) == 0

    sent = page.forms["send-form"].submit().follow()
    assert "3 invitations on the way." in words(sent)
    again = send_page(ada, host)
    assert "Every guest who can be reached has been invited already." in words(again)
    assert not again.html.find("button", string=lambda words: words and words.startswith("Send ") and
                               "invitation" in words)


def test_a_draft_offers_the_preview_and_a_test_but_no_send(app, run_in_request, host, ada):
    app.patch_json(host["url"], {"status": "draft"}, headers=host["ada"])
    add_guest(app, host)
    event_page = ada.get(f"/events/{host['event']['id']}")
    assert event_page.html.find("a", string="Preview the invitation")
    assert not event_page.html.find("a", string="Send invitations…")
    page = send_page(ada, host)
    assert "This event is a draft: publish it before sending invitations." in words(page)
    assert not page.html.find("button", string="Send 1 invitation")
    assert page.html.find("button", string="Send a test to me")
    refused = ada.post(f"/events/{host['event']['id']}/send-invitations", {"csrf_token": csrf(page)}).follow()
    assert "This event is a draft" in refused.html.select_one('.flash-error[role="alert"]').get_text()
    assert count(app, run_in_request, Notification, Notification.template == "invitation") == 0


def test_a_test_goes_to_the_host_once_per_click_and_leads_to_the_preview(app, run_in_request, host, ada):
    add_guest(app, host)
    page = send_page(ada, host)
    token = {"csrf_token": csrf(page)}
    first = ada.post(f"/events/{host['event']['id']}/send-test", token).follow()
    assert "A test invitation is on its way to your email address." in words(first)
    repeated = ada.post(f"/events/{host['event']['id']}/send-test", token).follow()  # a double click, a retry
    assert "A test invitation went to your email address moments ago." in words(repeated)
    [test] = inbox(app, "ada@example.com")
    assert test.subject == "[Test] Hana Host invites you to Tom & Jerry's <b>Supper</b>"
    assert test.text.startswith("This is a test, sent only to you:") and "Hello Ada," in test.text
    assert "This is a test, sent only to you" in test.html
    assert f"/events/{host['event']['id']}/invitation-preview" in test.text
    # nobody else got anything, no guest counts as invited, and the host's page says nothing was sent
    assert inbox(app, "grace@example.com") == []
    assert count(app, run_in_request, Guest, Guest.invited_at.is_not(None)) == 0
    assert count(app, run_in_request, AuditEvent, AuditEvent.action == "invitation.test_sent") == 1


def test_tests_clicked_at_once_send_one(app, run_in_request, host, ada):
    page = send_page(ada, host)
    token, cookies = csrf(page), dict(ada.cookies)

    def signed_in_browser():
        client = new_client(app.app, REMOTE_ADDR="203.0.113.7")
        for name, value in cookies.items():
            client.set_cookie(name, value.strip('"'))
        return client

    answers = together([functools.partial(signed_in_browser().post, f"/events/{host['event']['id']}/send-test",
                                          {"csrf_token": token}) for _ in range(4)])
    assert [answer.status_int for answer in answers] == [303] * 4
    assert count(app, run_in_request, Notification, Notification.recipient == "ada@example.com",
                 Notification.template == "invitation") == 1


def test_who_may_preview_and_test(app, run_in_request, host, ada):
    event_id = host["event"]["id"]
    sam = signed_in(app, run_in_request, "sam@example.com")  # door staff: sees, does not send
    assert sam.get(f"/events/{event_id}/invitation-preview").status_int == 200
    sam.get(f"/events/{event_id}/send-invitations", status=403)
    eve = signed_in(app, run_in_request, "eve@example.com")
    eve.get(f"/events/{event_id}/invitation-preview", status=404)
    eve.get(f"/events/{event_id}/send-invitations", status=404)
    token = csrf(send_page(ada, host))
    ada.post(f"/events/{event_id}/send-test", {"csrf_token": "wrong"}, status=400)
    assert token and inbox(app, "ada@example.com") == []


def test_the_invitation_preview_is_the_guests_page_that_records_nothing(app, run_in_request, host, ada):
    add_guest(app, host)
    page = ada.get(f"/events/{host['event']['id']}/invitation-preview")
    assert "Preview." in words(page) and "nothing you choose here is sent" in words(page)
    assert "Hana Host" in words(page) and "Kew Gardens" in words(page)
    form = page.html.find("form", id="rsvp-form")
    assert form["action"] == "" and form.find("button", type="submit").has_attr("disabled")
    assert page.html.find("label", string=lambda words: words and "Guests coming with you" in words)
    assert not page.html.find("a", string="Add to Apple Calendar (.ics)")  # it needs a guest's link
    assert page.html.find("a", string="Back to sending invitations")["href"].endswith("/send-invitations")
    assert page.headers["Cache-Control"].startswith("no-store")
    assert count(app, run_in_request, Guest, Guest.opened_at.is_not(None)) == 0
