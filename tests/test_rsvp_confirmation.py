"""The RSVP confirmation a guest gets after every recorded answer, the
host's name as the sender's and the event's reply-to address."""
import pytest
from sqlalchemy import func, select

from guestguard.notifications.models import Notification
from guestguard.notifications.suppression import UNSUBSCRIBE, suppress
from guestguard.testing import add_guest, event_host, inbox, issue, new_client, scalar

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "venue": "Kew Gardens", "rsvp_deadline": "2030-06-01T12:00:00+00:00",
         "reply_to": "  Gala-Desk@Example.org "}


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def confirmations(app, run_in_request):
    return scalar(app, run_in_request, select(func.count()).select_from(Notification).where(
        Notification.template == "rsvp_confirmation"))


def test_an_answer_is_confirmed_by_email_with_the_link_to_change_it_and_the_calendar(app, host, run_in_request):
    guest = add_guest(app, host, plus_ones_allowed=2)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 2})
    [message] = inbox(app, "grace@example.com")
    assert message.subject == "You're coming to Midsummer Gala: your answer is recorded"
    assert "Yes, you're coming, with 2 guests." in message.text
    assert f"http://guestguard.test/access/{token}\n" in message.text, "the link to change the answer"
    assert f"/access/{token}/event.ics" in message.text and f"/access/{token}/event.ics" in message.html
    assert "Change my answer" in message.html and "Unsubscribe" in message.html
    assert message.sender == "Ada <no-reply@localhost>", "the host's name shown to guests, the platform's address"
    assert message.reply_to == "gala-desk@example.org"
    assert message.unsubscribe_url, "a guest message: one-click unsubscribe"
    # The links carry the token: kept sealed, and dropped once sent.
    stored = run_in_request(lambda r: r.db.scalars(select(Notification).where(
        Notification.template == "rsvp_confirmation")).one(), app.app.registry)
    assert token not in str(stored.context) and stored.sealed_context is None


def test_a_repeated_answer_sends_nothing_a_changed_one_sends_a_new_confirmation(app, host, run_in_request):
    token = issue(app, host, add_guest(app, host))["token"]
    guest_browser = new_client(app.app)
    for _ in range(2):  # a double click, a retried request
        guest_browser.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe"})
    key = {"Idempotency-Key": "answer-1"}
    guest_browser.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe"}, headers=key)
    assert confirmations(app, run_in_request) == 1
    guest_browser.post(f"/rsvp/{token}", {"response": "no"}, status=303)  # the web form
    guest_browser.post(f"/rsvp/{token}", {"response": "no"}, status=303)
    assert confirmations(app, run_in_request) == 2
    latest = inbox(app, "grace@example.com")[0]
    assert "No, you can't come." in latest.text
    assert "event.ics" not in latest.text, "no calendar for a guest who is not coming"


def test_a_guest_with_only_a_phone_gets_a_text(app, host, run_in_request):
    guest = add_guest(app, host, name="Alan Turing", email=None, phone="+12125550123")
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    [text] = inbox(app, "+12125550123")
    assert text.text.startswith('Midsummer Gala: your answer "yes" is recorded. To change it: ')
    assert text.channel == "sms" and text.sender == "" and text.reply_to == ""


def test_an_unsubscribed_guest_gets_no_confirmation_and_it_shows_as_suppressed(app, host, run_in_request):
    token = issue(app, host, add_guest(app, host))["token"]
    run_in_request(lambda r: suppress(r.ctx, "email", "grace@example.com", UNSUBSCRIBE, source="guest",
                                      workspace_id=__import__("uuid").UUID(host["workspace"])), app.app.registry)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    assert inbox(app, "grace@example.com") == []
    status = scalar(app, run_in_request, select(Notification.status).where(
        Notification.template == "rsvp_confirmation"))
    assert status == "suppressed"


def test_account_email_keeps_the_platforms_sender(app, run_in_request):
    from guestguard.testing import signup

    signup(app, "new@example.com")
    [message] = inbox(app, "new@example.com")
    assert message.sender == "GuestGuard <no-reply@localhost>" and message.reply_to == ""


@pytest.mark.parametrize("value", ["not-an-email", "a@b", "x" * 321, "ada@example.com\u0000"])
def test_a_reply_to_that_is_not_an_email_address_is_refused_naming_the_field(app, host, value):
    refused = app.patch_json(host["url"], {"reply_to": value}, headers=host["ada"], status=(400, 422))
    assert "reply_to" in (refused.json["error"].get("fields") or {}) or "reply_to" in refused.json["error"]["message"]


def test_the_reply_to_is_set_shown_and_cleared_through_the_api(app, host):
    assert host["event"]["reply_to"] == "gala-desk@example.org", "trimmed and lower-cased"
    changed = app.patch_json(host["url"], {"reply_to": "rsvp@example.org"}, headers=host["ada"]).json["event"]
    assert changed["reply_to"] == "rsvp@example.org"
    cleared = app.patch_json(host["url"], {"reply_to": None}, headers=host["ada"]).json["event"]
    assert cleared["reply_to"] is None
    untouched = app.patch_json(host["url"], {"venue": "Kew"}, headers=host["ada"]).json["event"]
    assert untouched["reply_to"] is None


def test_the_event_form_edits_the_reply_to(app, host, run_in_request):
    from guestguard.testing import csrf, signed_in

    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{host['event']['id']}/edit")
    assert 'name="reply_to"' in page.text and "gala-desk@example.org" in page.text
    form = page.forms[next(i for i, f in page.forms.items() if "reply_to" in f.fields)]
    form["reply_to"] = "not an address"
    refused = form.submit(status=400)
    assert "Reply-to address" in refused.text and 'aria-invalid="true"' in refused.text
    form = refused.forms[next(i for i, f in refused.forms.items() if "reply_to" in f.fields)]
    form["reply_to"] = "host@example.org"
    form.submit(status=303)
    assert app.get(host["url"], headers=host["ada"]).json["event"]["reply_to"] == "host@example.org"
    assert csrf  # the form carries its token (webtest submits it)


@pytest.mark.parametrize("host_name, sender", [
    ("Smith, Jones & Co", '"Smith, Jones & Co" <no-reply@gg.example>'),
    ("Evil\r\nBcc: victim@example.org", "\"Evil Bcc: victim@example.org\" <no-reply@gg.example>"),
    ("Zoë's party", "=?utf-8?b?Wm/DqydzIHBhcnR5?= <no-reply@gg.example>"),
    ("", "GuestGuard <no-reply@gg.example>"),
])
def test_the_hosts_name_cannot_break_the_from_header(host_name, sender):
    from guestguard.notifications.services import sender_for

    notification = Notification(kind="guest", context={"sender_name": host_name})
    assert sender_for({"notifications.email.sender": "GuestGuard <no-reply@gg.example>"}, notification) == sender


def test_the_confirmation_escapes_what_hosts_and_guests_typed():
    from guestguard.notifications.rendering import MessageRenderer
    from guestguard.web import default_templates_dir

    context = {"guest_name": "<img src=x onerror=alert(1)>", "event_name": "Tom & Jerry's <b>party</b>",
               "host_name": "A & B", "timezone": "UTC", "starts_at": "2030-06-21T19:00:00+00:00",
               "ends_at": None, "rsvp_deadline": None, "venue": "", "response": "yes", "plus_ones": "1",
               "change_url": "https://gg.example/access/t", "calendar_url": "https://gg.example/access/t/event.ics",
               "unsubscribe_url": "https://gg.example/unsubscribe/u"}
    renderer = MessageRenderer(default_templates_dir())
    email = renderer.render("email", "rsvp_confirmation", context)
    assert "<img" not in email.html and "&lt;img src=x" in email.html
    assert "Tom &amp; Jerry&#39;s &lt;b&gt;party&lt;/b&gt;" in email.html
    assert email.subject == "You're coming to Tom & Jerry's <b>party</b>: your answer is recorded"
    assert "Yes, you're coming, with 1 guest." in email.text
    text = renderer.render("sms", "rsvp_confirmation", context).text
    assert text.startswith('Tom & Jerry\'s <b>party</b>: your answer "yes, +1" is recorded.')
    assert len(text) < 160 + 60, "one or two segments with the link"


def test_a_waitlisted_yes_is_confirmed_as_waiting_and_older_queued_messages_still_render():
    from guestguard.notifications.rendering import MessageRenderer
    from guestguard.web import default_templates_dir

    context = {"guest_name": "Cy", "event_name": "Lantern Supper", "host_name": "Hana", "timezone": "UTC",
               "starts_at": "2030-06-21T19:00:00+00:00", "ends_at": None, "rsvp_deadline": None, "venue": "",
               "response": "yes", "plus_ones": "0", "change_url": "https://gg.example/access/t",
               "calendar_url": "https://gg.example/access/t/event.ics",
               "unsubscribe_url": "https://gg.example/unsubscribe/u"}
    renderer = MessageRenderer(default_templates_dir())
    waiting = renderer.render("email", "rsvp_confirmation", {**context, "waitlisted": "yes"})
    assert waiting.subject == "You're on the waitlist for Lantern Supper: your answer is recorded"
    assert "Yes, but the event is full: you're on the waitlist." in waiting.text
    assert "on the waitlist: the event is full" in renderer.render(
        "sms", "rsvp_confirmation", {**context, "waitlisted": "yes"}).text
    # queued before confirmations said whether the guest waits: read as seated
    for seated in (context, {**context, "waitlisted": ""}):
        assert "Yes, you're coming." in renderer.render("email", "rsvp_confirmation", seated).text
        assert "waitlist" not in renderer.render("sms", "rsvp_confirmation", seated).text
