"""POST /webhooks/ses and the whole loop: a message sent through SES
(moto's server), SES's event signed as SNS signs it and posted, stored in
the inbox, applied by the worker, and the next message to a bounced or
complaining address held back as suppressed."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.plugins import SettingsError
from guestguard.testing import DomainEvents, drain, guestguard_command, in_request, site_ini
from guestguard.webhooks.models import InboxEntry
from guestguard_ses import sns_policy
from guestguard_ses.testing import TOPIC, confirmation, notification, ses_event

from .conftest import CERT_PATH, ses_settings

RECIPIENT = "grace@example.com"


@pytest.fixture
def events():
    return DomainEvents()


@pytest.fixture
def app(make_app, ses, local, events):
    return make_app(ses_settings(ses, local), plugins=[("events", events)])


def call(app, func):
    return in_request(app.app.registry, lambda request: func(request.ctx))


def send(app, recipient=RECIPIENT) -> dict:
    """Queue an email and let the worker send it; the row as it ends."""
    notification_id = call(app, lambda ctx: queue_notification(
        ctx, channel="email", recipient=recipient, template="test_message",
        context={"base_url": "https://gg.example"}).id)
    drain(app.app.registry["huey"])
    return row(app, notification_id)


def row(app, notification_id) -> dict:
    def read(ctx):
        found = ctx.db.get(Notification, notification_id)
        return {name: getattr(found, name) for name in (
            "id", "status", "provider", "provider_message_id", "delivery_state", "delivery_detail", "delivered_at")}
    return call(app, read)


def inbox(app) -> list[InboxEntry]:
    def read(ctx):
        found = list(ctx.db.scalars(select(InboxEntry).order_by(InboxEntry.received_at)))
        ctx.db.expunge_all()
        return found
    return call(app, read)


def suppressed(app) -> list[tuple[str, str, str]]:
    return call(app, lambda ctx: [(s.address, s.reason, s.source) for s in ctx.db.scalars(select(Suppression))])


def post(app, message: dict | str | bytes, status: int = 200, **headers):
    if isinstance(message, dict):
        headers.setdefault("x-amz-sns-message-type", message.get("Type", ""))
        body = json.dumps(message).encode()
    else:
        body = message.encode() if isinstance(message, str) else message
    # SNS posts JSON as text/plain.
    return app.post("/webhooks/ses", body, headers={"Content-Type": "text/plain; charset=UTF-8", **headers},
                    status=status)


def signed(signer, local, event, version="2", **options) -> dict:
    return signer.sign(notification(event, local.url(CERT_PATH), **options), version)


def test_a_delivery_report_marks_the_message_delivered_once(app, signer, local, events):
    sent = send(app)
    assert (sent["status"], sent["provider"], sent["delivery_state"]) == ("succeeded", "ses", "sent")
    message = signed(signer, local, ses_event("Delivery", sent["provider_message_id"],
                                              delivery={"timestamp": "2026-12-06T08:00:01.000Z"}))
    assert post(app, message).json == {"stored": True}
    assert post(app, message).json == {"stored": False}, "SNS delivering it again changes nothing"
    after = row(app, sent["id"])
    assert after["delivery_state"] == "delivered"
    assert after["delivered_at"] == dt.datetime(2026, 12, 6, 8, 0, 1, tzinfo=dt.UTC)
    [entry] = inbox(app)
    assert (entry.provider, entry.event_id, entry.status) == ("ses", message["MessageId"], "succeeded")
    assert json.loads(entry.body) == message, "stored exactly as it came"
    assert events.names("notification.delivered") == ["notification.delivered"]
    assert local.asked.count(CERT_PATH) == 1, "the certificate is fetched once and kept"


@pytest.mark.parametrize("shape", ["eventType", "notificationType"])
def test_a_hard_bounce_suppresses_the_address_and_the_next_message_is_held_back(app, signer, local, ses, shape,
                                                                                events):
    sent = send(app, "Grace@Example.com")
    bounce = {"bounceType": "Permanent", "bounceSubType": "General",
              "bouncedRecipients": [{"emailAddress": "Grace@Example.com", "diagnosticCode": "smtp; 550 5.1.1"}]}
    post(app, signed(signer, local, ses_event("Bounce", sent["provider_message_id"], shape=shape, bounce=bounce),
                     version="1"))
    after = row(app, sent["id"])
    assert (after["delivery_state"], after["delivery_detail"]) == ("bounced", "hard bounce: General")
    assert suppressed(app) == [("grace@example.com", "hard_bounce", "ses")]
    assert [event.data["detail"] for event in events.named("notification.bounced")] == ["hard bounce: General"]
    # The loop closes: the next message to the address is not sent.
    sent_before = len(ses.sent())
    following = send(app, "grace@example.com")
    assert (following["status"], following["delivery_state"]) == ("suppressed", "suppressed")
    assert len(ses.sent()) == sent_before


@pytest.mark.parametrize("shape", ["eventType", "notificationType"])
def test_a_complaint_suppresses_the_address(app, signer, local, ses, shape):
    sent = send(app)
    post(app, signed(signer, local, ses_event("Delivery", sent["provider_message_id"], shape=shape)))
    post(app, signed(signer, local, ses_event("Complaint", sent["provider_message_id"], shape=shape,
                                              complaint={"complaintFeedbackType": "abuse"})))
    assert row(app, sent["id"])["delivery_state"] == "complained"
    assert suppressed(app) == [(RECIPIENT, "complaint", "ses")]
    assert send(app)["status"] == "suppressed"


def test_reports_out_of_order_leave_the_latest_fact(app, signer, local):
    sent = send(app)
    message_id = sent["provider_message_id"]
    post(app, signed(signer, local, ses_event("Complaint", message_id, complaint={})))
    post(app, signed(signer, local, ses_event("Delivery", message_id)))
    post(app, signed(signer, local, ses_event("Send", message_id)))
    assert row(app, sent["id"])["delivery_state"] == "complained"
    notes = [entry.note for entry in inbox(app)]
    assert notes[1].endswith("is complained: a later report, delivered, changes nothing")
    assert notes[2] == f"Send event for {message_id}: nothing to update"


def test_a_soft_bounce_after_a_delivery_is_an_auto_reply(app, signer, local):
    sent = send(app)
    post(app, signed(signer, local, ses_event("Delivery", sent["provider_message_id"])))
    post(app, signed(signer, local, ses_event("Bounce", sent["provider_message_id"],
                                              bounce={"bounceType": "Transient", "bounceSubType": "General"})))
    assert row(app, sent["id"])["delivery_state"] == "delivered"
    assert suppressed(app) == []
    assert inbox(app)[1].note.endswith("changes nothing (an auto-reply)")


def test_soft_bounces_fail_the_message_that_reaches_the_limit_within_the_window(make_app, ses, local, signer,
                                                                                events):
    app = make_app(ses_settings(ses, local, **{"ses.soft_bounce_limit": "2"}), plugins=[("events", events)])
    first, second = send(app), send(app)
    full = {"bounceType": "Transient", "bounceSubType": "MailboxFull"}
    post(app, signed(signer, local, ses_event("Bounce", first["provider_message_id"], bounce=full)))
    assert (row(app, first["id"])["delivery_state"], row(app, first["id"])["delivery_detail"]) == (
        "sent", "soft bounce: Transient: MailboxFull")
    post(app, signed(signer, local, ses_event("Bounce", second["provider_message_id"], bounce=full)))
    after = row(app, second["id"])
    assert after["delivery_state"] == "failed"
    assert after["delivery_detail"] == "2 soft bounces to this address within 72 h (last: Transient: MailboxFull)"
    assert suppressed(app) == [], "a full mailbox empties: the address is not suppressed"
    assert [event.data["error"] for event in events.named("notification.failed")] == [
        "undelivered: 2 soft bounces to this address within 72 h (last: Transient: MailboxFull)"]


def test_a_message_ses_rejected_is_failed(app, signer, local):
    sent = send(app)
    post(app, signed(signer, local, ses_event("Reject", sent["provider_message_id"], reject={"reason": "Bad content"})))
    assert (row(app, sent["id"])["delivery_state"], row(app, sent["id"])["delivery_detail"]) == (
        "failed", "rejected by Amazon SES: Bad content")


def test_an_event_about_a_message_we_never_sent_is_noted(app, signer, local):
    post(app, signed(signer, local, ses_event("Delivery", "0100-not-ours")))
    [entry] = inbox(app)
    assert (entry.status, entry.attempts) == ("succeeded", 1)
    assert entry.note == "no notification sent through ses has message id '0100-not-ours': nothing to update"


def test_a_notification_that_is_not_an_ses_event_is_noted(app, signer, local):
    post(app, signer.sign(notification("hello from the console", local.url(CERT_PATH))))
    assert inbox(app)[0].note == "not an Amazon SES event (a message published to the topic by hand?): ignored"


def test_a_subscription_is_confirmed_by_the_worker(app, signer, local):
    local.answers["/confirm?Token=abc"] = (200, b"<ConfirmSubscriptionResponse/>")
    message = signer.sign(confirmation(local.url("/confirm?Token=abc"), local.url(CERT_PATH)))
    assert post(app, message).json == {"stored": True}
    assert "/confirm?Token=abc" in local.asked
    [entry] = inbox(app)
    assert (entry.status, entry.note) == ("succeeded", f"subscription to {TOPIC} confirmed")


def test_a_confirmation_amazon_does_not_take_is_retried_with_its_error(make_app, ses, local, signer):
    app = make_app({**ses_settings(ses, local), "huey.immediate": "false"})
    message = signer.sign(confirmation(local.url("/confirm?Token=gone"), local.url(CERT_PATH)))
    post(app, message)
    drain(app.app.registry["huey"])
    [entry] = inbox(app)
    assert (entry.status, entry.last_error) == ("pending", "FetchFailed: answered 404")


def test_a_subscription_link_off_amazons_hosts_is_never_followed(make_app, ses, local, signer):
    app = make_app({**ses_settings(ses, local), "huey.immediate": "false"})
    post(app, signer.sign(confirmation("http://169.254.169.254/latest/meta-data", local.url(CERT_PATH))))
    drain(app.app.registry["huey"])
    [entry] = inbox(app)
    assert entry.last_error == "Refused: SubscribeURL is not on an Amazon SNS host"


def tampered(message: dict) -> dict:
    return {**message, "Message": message["Message"].replace("Delivery", "Bounce")}


@pytest.mark.parametrize("change, status, code", [
    (tampered, 403, "forged_notification"),
    (lambda m: {**m, "TopicArn": "arn:aws:sns:eu-west-1:1:other"}, 403, "forged_notification"),
    (lambda m: {**m, "SigningCertURL": "https://sns.eu-west-1.amazonaws.com.evil.com/c.pem"}, 403,
     "forged_notification"),
    (lambda m: {**m, "Timestamp": "2026-01-01T00:00:00.000Z"}, 400, "invalid_notification"),
    (lambda m: {key: value for key, value in m.items() if key != "Signature"}, 400, "invalid_notification"),
])
def test_forged_or_stale_messages_are_refused_and_nothing_is_stored(app, signer, local, change, status, code):
    sent = send(app)
    message = change(signed(signer, local, ses_event("Delivery", sent["provider_message_id"])))
    answer = post(app, message, status=status)
    assert answer.json["error"]["code"] == code
    assert inbox(app) == []
    assert row(app, sent["id"])["delivery_state"] == "sent"


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe{}", b"[]", b'{"Type": "Notification"}', b""])
def test_unparseable_bodies_are_refused(app, body):
    assert post(app, body, status=400).json["error"]["code"] == "invalid_notification"
    assert inbox(app) == []


def test_a_type_header_that_contradicts_the_body_is_refused(app, signer, local):
    message = signed(signer, local, ses_event("Delivery", "x"))
    post(app, message, status=400, **{"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert inbox(app) == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(make_app, ses, local):
    app = make_app({**ses_settings(ses, local), "webhooks.max_payload_bytes": "2048"})
    assert post(app, "x" * 2049, status=413).json["error"]["code"] == "too_large"


def test_a_certificate_out_of_reach_is_a_503_so_sns_tries_again(app, signer, local):
    message = signer.sign(notification(ses_event("Delivery", "x"), local.url("/missing.pem")))
    answer = post(app, message, status=503)
    assert answer.headers["Retry-After"] == "60"
    assert inbox(app) == []


def test_the_default_policy_refuses_a_certificate_served_locally(make_app, ses, local, signer):
    app = make_app(ses_settings(ses))  # Amazon's https hosts only
    answer = post(app, signed(signer, local, ses_event("Delivery", "x")), status=403)
    assert answer.json["error"]["message"] == "Not a genuine SNS message: SigningCertURL must use https."
    assert local.asked == []


def test_plain_http_needs_a_changed_host_pattern_and_is_refused_in_production(make_app, ses):
    with pytest.raises(SettingsError, match="ses.sns_allow_http"):
        make_app({**ses_settings(ses), "ses.sns_allow_http": "true"})
    production = {"ses.sns_allow_http": True, "ses.sns_certificate_hosts": "^x$", "app.env": "production",
                  "ses.sns_signature_versions": ("2",), "ses.sns_topic_arns": ()}
    with pytest.raises(SettingsError, match="must be false in production"):
        sns_policy(production)


def test_the_webhook_needs_no_login_and_no_csrf_token(app, signer, local):
    sent = send(app)
    anonymous = app  # no cookie, no token, no Authorization header
    post(anonymous, signed(signer, local, ses_event("Delivery", sent["provider_message_id"])), status=200)


def test_send_test_sends_through_ses(tmp_path, db_url, ses, make_app):
    queue = f"sqlite:///{tmp_path}/queue.sqlite"
    settings = ses_settings(ses)
    env = {"GG_DB_URL": db_url, "GG_APP_ENV": "test", "GG_HUEY_URL": queue, "GG_HUEY_IN_PROCESS_WORKER": "false",
           **{f"GG_{name.upper().replace('.', '_')}": value for name, value in settings.items()}}
    result = guestguard_command("send-test", str(site_ini(tmp_path)), "--to", "ops@example.com", env=env,
                                timeout=60)
    assert result.returncode == 0, result.stderr
    worker = make_app({**settings, "huey.url": queue, "huey.immediate": "false"})
    drain(worker.app.registry["huey"])
    [sent] = ses.sent()
    assert sent["destinations"] == ["ops@example.com"]
    stored = call(worker, lambda ctx: [(n.status, n.provider, n.provider_message_id)
                                       for n in ctx.db.scalars(select(Notification))])
    assert stored == [("succeeded", "ses", sent["id"])]


def test_sending_through_ses_without_a_topic_is_said_at_startup(make_app, ses, caplog):
    make_app({**ses_settings(ses), "ses.sns_topic_arns": ""})
    assert any("ses.sns_topic_arns is empty" in record.getMessage() for record in caplog.records)
    caplog.clear()
    make_app(ses_settings(ses))
    assert not any("ses.sns_topic_arns" in record.getMessage() for record in caplog.records)
