"""One-click unsubscribe (RFC 8058): every invitation email carries a link
and the List-Unsubscribe headers' URL; the link's page confirms, its POST
(from the page or a mail client, no login, no CSRF token) stops that
workspace's guest messages to the address, once."""
import datetime as dt
import uuid

import pytest
import time_machine
from sqlalchemy import select

from guestguard.notifications import unsubscribe
from guestguard.notifications.models import Notification, Suppression
from guestguard.testing import add_guest, event_host, in_request, inbox, signup

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "timezone": "Europe/London"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def invited(app, host, **guest):
    guest = add_guest(app, host, **guest)
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    return guest


def unsubscribe_path(message) -> str:
    assert message.unsubscribe_url.startswith("http://guestguard.test/unsubscribe/")
    return message.unsubscribe_url.removeprefix("http://guestguard.test")


def suppressions(app):
    return in_request(app.app.registry, lambda request: [
        (row.channel, row.address, row.scope, row.reason, row.source)
        for row in request.db.scalars(select(Suppression))])


def test_an_invitation_carries_its_unsubscribe_link_and_account_mail_none(app, host):
    invited(app, host)
    [message] = inbox(app, "grace@example.com")
    path = unsubscribe_path(message)
    assert message.unsubscribe_url in message.text and message.unsubscribe_url in message.html
    assert "grace" not in path.lower(), "the link does not carry the address readably"
    signup(app, email="lin@example.com")
    [account_mail] = inbox(app, "lin@example.com")
    assert account_mail.unsubscribe_url == "" and "/unsubscribe/" not in account_mail.text


def test_the_page_confirms_then_one_click_unsubscribes_once(app, host):
    grace = invited(app, host)
    path = unsubscribe_path(inbox(app, "grace@example.com")[0])
    page = app.get(path)
    assert "Stop messages from Gala team?" in page.text and "g••••@example.com" in page.text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert suppressions(app) == [], "looking at the page changes nothing"

    app.reset()  # a mail client: no cookies, no CSRF token
    done = app.post(path, ONE_CLICK)
    assert "You’re unsubscribed" in done.text
    app.post(path, ONE_CLICK)  # the mail client retries; the guest clicks the page's button too
    assert suppressions(app) == [("email", "grace@example.com", host["workspace"], "unsubscribe", "guest")]

    # The host's next invitation to Grace is held back.
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)):
        app.post_json(f"{host['url']}/guests/{grace['id']}/send", {}, headers=host["ada"], status=202)
    statuses = in_request(app.app.registry, lambda request: sorted(request.db.scalars(
        select(Notification.status).where(Notification.template == "invitation"))))
    assert statuses == ["succeeded", "suppressed"]


@pytest.mark.parametrize("token", [
    "A" * 120,                       # the shape, but not ours
    "x" * 5000,                      # huge
    "gAAAAA%C3%A9" * 20,             # not ASCII
    "A",                             # short
])
def test_a_link_that_names_nothing_is_one_plain_404(app, token):
    page = app.get(f"/unsubscribe/{token}", status=404)
    assert "This unsubscribe link is not valid" in page.text
    app.post(f"/unsubscribe/{token}", ONE_CLICK, status=404)
    assert suppressions(app) == []


def test_bytes_that_are_no_text_are_refused_before_the_page(app):
    app.post("/unsubscribe/%00%ff", ONE_CLICK, status=400)
    assert suppressions(app) == []


def test_a_tampered_link_or_one_from_another_secret_is_refused(app, make_app, host):
    invited(app, host)
    path = unsubscribe_path(inbox(app, "grace@example.com")[0])
    token = path.rsplit("/", 1)[1]
    flipped = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    app.post(f"/unsubscribe/{flipped}", ONE_CLICK, status=404)
    other = make_app({"app.secret": "another-secret-" * 4})
    other.post(path, ONE_CLICK, status=404)
    assert suppressions(app) == []


def test_a_link_of_a_deleted_workspace_is_refused(app, host, run_in_request):
    from guestguard.db import utcnow
    from guestguard.workspaces.models import Workspace

    invited(app, host)
    path = unsubscribe_path(inbox(app, "grace@example.com")[0])

    def delete(request):
        request.db.get(Workspace, uuid.UUID(host["workspace"])).deleted_at = utcnow()

    run_in_request(delete)
    app.post(path, ONE_CLICK, status=404)


def test_guessing_links_is_limited_by_address(make_app):
    app = make_app({"ratelimit.enabled": "true", "ratelimit.invalid_link": "3/minute"})
    for _ in range(3):
        app.post("/unsubscribe/" + "A" * 120, ONE_CLICK, status=404)
    app.post("/unsubscribe/" + "A" * 120, ONE_CLICK, status=429)


def test_tokens_round_trip_every_address_shape():
    settings = {"app.secret": "s" * 40, "app.base_url": "https://gg.example"}
    for channel, address in (("email", "a@b.example"), ("email", "x" * 300 + "@example.com"),
                             ("sms", "+442079460958")):
        subscription = unsubscribe.Subscription(uuid.uuid4(), channel, address)
        token = unsubscribe.token_for(settings, subscription)
        assert len(token) <= unsubscribe.MAX_TOKEN and token.isascii() and "=" not in token
        assert unsubscribe.read_token(settings, token) == subscription
