"""The suppression list: an address that bounced, complained, texted STOP or
unsubscribed is not written to again, checked when each message is about to
go out; the host sees why an invitation was held back."""
import uuid

import pytest
from sqlalchemy import func, select

from guestguard.audit.models import AuditEvent
from guestguard.notifications import suppression
from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.testing import (
    add_guest,
    create_user,
    drain,
    event_host,
    guestguard_command,
    in_request,
    inbox,
    together,
)

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "ends_at": "2030-09-20T23:00:00", "timezone": "Europe/London", "venue": "The Barn"}


@pytest.fixture
def app(make_app):
    return make_app({"notifications.sms.provider": "console"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def suppress(app, channel, address, reason, workspace_id=None):
    return in_request(app.app.registry, lambda request: suppression.suppress(
        request.ctx, channel, address, reason, source="test",
        workspace_id=uuid.UUID(workspace_id) if workspace_id else None).id)


def invite(app, host, guest):
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    return in_request(app.app.registry, lambda request: request.db.scalars(
        select(Notification).where(Notification.template == "invitation")
        .order_by(Notification.created_at.desc())).first())


def feed(app, host):
    return [item["summary"] for item in app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]]


def test_a_bounced_address_gets_no_invitation_and_the_host_reads_why(app, host):
    suppress(app, "email", "Grace@Example.com ", suppression.HARD_BOUNCE)
    guest = add_guest(app, host)
    notification = invite(app, host, guest)
    assert notification.status == "suppressed"
    assert notification.last_error == f"suppressed: {suppression.REASONS['hard_bounce']}"
    assert notification.sealed_context is None, "the link is not kept for a message that never goes out"
    assert inbox(app, "grace@example.com") == []
    assert ("Invitation to Grace Hopper was not sent by email: an earlier message to this address bounced "
            "(it does not exist or refuses mail)") in feed(app, host)


def test_the_list_is_read_at_sending_time_not_at_queueing(make_app, run_in_request):
    app = make_app({"huey.immediate": "false"})
    registry = app.app.registry
    ids = run_in_request(lambda request: [queue_notification(
        request.ctx, channel="email", recipient=recipient, template="test_message",
        context={"base_url": "https://gg.example"}).id for recipient in ("ada@example.com", "bob@example.com")],
        registry)
    suppress(app, "email", "ADA@example.com", suppression.COMPLAINT)
    drain(registry["huey"])
    statuses = in_request(registry, lambda request: {
        row.recipient: row.status for row in request.db.scalars(select(Notification).where(Notification.id.in_(ids)))})
    assert statuses == {"ada@example.com": "suppressed", "bob@example.com": "succeeded"}
    assert [message.recipient for _, message in registry["notifications.providers_by_name"]["console"].messages] \
        == ["bob@example.com"]


def test_an_unsubscribe_stops_that_workspaces_guest_messages_only(app, host, run_in_request):
    guest = add_guest(app, host)
    suppress(app, "email", "grace@example.com", suppression.UNSUBSCRIBE, host["workspace"])
    assert invite(app, host, guest).status == "suppressed"
    # Another host's invitation, and Grace's own account mail, still reach her.
    other = run_in_request(other_workspace, app.app.registry)
    sent = in_request(app.app.registry, lambda request: [
        queue_notification(request.ctx, channel="email", recipient="grace@example.com", template="test_message",
                           context={"base_url": "https://gg.example"}, kind=kind, workspace_id=workspace).id
        for kind, workspace in (("guest", uuid.UUID(other)), ("account", uuid.UUID(host["workspace"])))])
    statuses = in_request(app.app.registry, lambda request: [request.db.get(Notification, i).status for i in sent])
    assert statuses == ["succeeded", "succeeded"]
    assert len(inbox(app, "grace@example.com")) == 2


def other_workspace(request) -> str:
    from guestguard.workspaces.services import create_workspace

    return str(create_workspace(request.ctx, create_user(request, "olga@example.com", "Olga"), "Olga's").id)


def test_stop_stops_every_text_to_the_number(app, host):
    suppress(app, "sms", "+44 20 7946 0958", suppression.STOP)
    guest = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    notification = invite(app, host, guest)
    assert (notification.channel, notification.status) == ("sms", "suppressed")
    assert "Invitation to Phil was not sent by text message: the recipient texted STOP" in feed(app, host)


def test_listing_twice_keeps_one_row_and_lifting_lets_messages_through(app, host):
    first = suppress(app, "email", "grace@example.com", suppression.OPERATOR)
    assert suppress(app, "email", "GRACE@example.com", suppression.HARD_BOUNCE) == first
    guest = add_guest(app, host)
    assert invite(app, host, guest).status == "suppressed"
    lifted = in_request(app.app.registry, lambda request: suppression.lift(request.ctx, "email", "Grace@example.com"))
    assert lifted == 1
    app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=host["ada"], status=201)
    assert invite_again(app, host, guest).status == "succeeded"
    actions = in_request(app.app.registry, lambda request: request.db.scalars(
        select(AuditEvent.action).where(AuditEvent.target_type == "suppression").order_by(AuditEvent.created_at)
    ).all())
    assert actions == ["suppression.added", "suppression.lifted"]


def invite_again(app, host, guest):
    """Send once more (after RESEND_AFTER has passed for the guest)."""
    import datetime as dt

    import time_machine

    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)):
        return invite(app, host, guest)


def test_two_listings_at_once_make_one_row(app, db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serializes writers; the race needs PostgreSQL")
    outcomes = together([lambda: suppress(app, "email", "race@example.com", suppression.HARD_BOUNCE)] * 4)
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert errors == []
    count = in_request(app.app.registry, lambda request: request.db.scalar(
        select(func.count()).select_from(Suppression).where(Suppression.address == "race@example.com")))
    assert count == 1


@pytest.mark.parametrize("channel, address, problem", [
    ("email", "no-at-sign", "is not an email address"),
    ("email", "ada@example.com\x00", "is not an email address"),
    ("email", "ada\ud800@example.com", "is not an email address"),
    ("email", "a@b", "is not an email address"),
    ("email", "x" * 320 + "@example.com", "is not an email address"),
    ("sms", "020 7946 0958", "is not a phone number"),
    ("sms", "+44 20 7946 09", "is not a valid phone number .write it with its country code"),
    ("push", "device-token", "is not a channel with a suppression list"),
])
def test_what_cannot_be_listed_is_refused_by_name(channel, address, problem):
    with pytest.raises(suppression.AddressError, match=problem):
        suppression.normalize(channel, address)


def test_an_unsubscribe_needs_its_workspace(app):
    with pytest.raises(ValueError, match="belongs to the workspace"):
        suppress(app, "email", "grace@example.com", suppression.UNSUBSCRIBE)


def test_the_operator_command_adds_lists_and_lifts(tmp_path):
    from guestguard.testing import site_ini

    ini = site_ini(tmp_path)
    assert guestguard_command("migrate", str(ini)).returncode == 0
    added = guestguard_command("suppression", "add", str(ini), "email", "Grace@Example.com")
    assert added.returncode == 0, added.stderr
    assert "suppressed grace@example.com (email)" in added.stdout
    listed = guestguard_command("suppression", "list", str(ini))
    assert "email  grace@example.com  operator  operator  everywhere" in listed.stdout
    lifted = guestguard_command("suppression", "lift", str(ini), "email", "grace@example.com")
    assert lifted.returncode == 0 and "lifted 1 suppression(s)" in lifted.stdout
    again = guestguard_command("suppression", "lift", str(ini), "email", "grace@example.com")
    assert again.returncode == 1, "lifting what is not listed says so in the exit status"
    bad = guestguard_command("suppression", "add", str(ini), "sms", "0207")
    assert bad.returncode == 2 and "'0207' is not a phone number" in bad.stderr
