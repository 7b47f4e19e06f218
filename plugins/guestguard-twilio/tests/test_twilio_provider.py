"""The Twilio provider, sending through the real twilio SDK to a stand-in
for Twilio's Messages API on 127.0.0.1 (tests/conftest.py)."""
from __future__ import annotations

import dataclasses
import socket
import uuid

import pytest
from sqlalchemy import select

from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.plugins import (
    NotificationProvider,
    OutgoingMessage,
    PermanentDeliveryError,
    SettingsError,
    TransientDeliveryError,
)
from guestguard.sms_segments import MessageTooLong
from guestguard.testing import drain, guestguard_command, site_ini
from guestguard_twilio import TwilioConfig, TwilioProvider

RECIPIENT = "+447911123456"


def text(body: str = "Hello from the gala", recipient: str = RECIPIENT) -> OutgoingMessage:
    return OutgoingMessage(notification_id=uuid.uuid4(), channel="sms", recipient=recipient, sender="",
                           subject="", text=body + "\n")


def provider_for(stub, **overrides) -> TwilioProvider:
    values = {"account_sid": stub.account_sid, "auth_token": stub.auth_token, "from_number": stub.from_number,
              "public_base_url": stub.public_base_url, "timeout": 2, "api_base_url": stub.url}
    values.update(overrides)
    return TwilioProvider(TwilioConfig(**values))


def test_a_text_goes_out_with_our_sender_and_status_callback_and_its_sid_comes_back(twilio_stub):
    provider = provider_for(twilio_stub)
    assert isinstance(provider, NotificationProvider)
    sid = provider.send(text())
    assert sid.startswith("SM")
    assert len(sid) == 34
    [form] = twilio_stub.sent
    assert form["To"] == RECIPIENT
    assert form["From"] == twilio_stub.from_number
    assert form["Body"] == "Hello from the gala", "the renderer's last newline is not sent"
    assert form["StatusCallback"] == "https://gg.example/webhooks/twilio/status"
    assert "MessagingServiceSid" not in form


def test_a_messaging_service_picks_the_sender_instead_of_a_number(twilio_stub):
    service = "MG" + "ab" * 16
    provider_for(twilio_stub, from_number="", messaging_service_sid=service).send(text())
    [form] = twilio_stub.sent
    assert form["MessagingServiceSid"] == service
    assert "From" not in form


@pytest.mark.parametrize("status, code", [(429, 20429), (500, None), (503, 30001)])
def test_throttling_and_server_errors_are_transient(twilio_stub, status, code):
    twilio_stub.answer(status, code)
    with pytest.raises(TransientDeliveryError, match=f"Twilio answered {status}"):
        provider_for(twilio_stub).send(text())
    assert twilio_stub.sent == []


def test_a_twilio_that_does_not_answer_in_time_is_transient(twilio_stub):
    twilio_stub.answer(pause=2.5)
    with pytest.raises(TransientDeliveryError, match="Twilio could not be reached: ReadTimeout"):
        provider_for(twilio_stub, timeout=1).send(text())


def test_a_twilio_that_cannot_be_reached_is_transient():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = TwilioProvider(TwilioConfig(account_sid="AC" + "0" * 32, auth_token="x", from_number="+15005550006",
                                           api_base_url=f"http://127.0.0.1:{port}", timeout=1))
    with pytest.raises(TransientDeliveryError, match="ConnectionError"):
        provider.send(text())


def test_wrong_credentials_are_transient_so_messages_wait_for_the_operator(twilio_stub):
    with pytest.raises(TransientDeliveryError, match="401, error 20003: check the twilio"):
        provider_for(twilio_stub, auth_token="not-the-token").send(text())


@pytest.mark.parametrize("code, meaning", [(21211, "the number is not a valid phone number"),
                                           (21614, "the number is not a mobile number"),
                                           (21999, "the message was refused")])
def test_a_refused_number_is_permanent_and_the_error_never_names_it(twilio_stub, code, meaning):
    twilio_stub.answer(400, code)
    with pytest.raises(PermanentDeliveryError) as refused:
        provider_for(twilio_stub).send(text())
    assert str(refused.value) == f"Twilio answered 400, error {code}: {meaning}"
    assert RECIPIENT not in str(refused.value)
    assert refused.value.suppress is None


def test_a_number_that_replied_stop_is_refused_and_to_be_suppressed(twilio_stub):
    twilio_stub.answer(400, 21610)
    with pytest.raises(PermanentDeliveryError, match="replied STOP") as refused:
        provider_for(twilio_stub).send(text())
    assert refused.value.suppress == "stop"


def test_a_text_over_the_segment_cap_is_refused_without_calling_twilio(twilio_stub):
    with pytest.raises(PermanentDeliveryError, match="this text is 3 SMS segments long, the limit is 2"):
        provider_for(twilio_stub, max_segments=2).send(text("x" * 307))
    assert twilio_stub.received == []
    provider_for(twilio_stub, max_segments=2).send(text("x" * 306))
    assert len(twilio_stub.sent) == 1


# --- settings ----------------------------------------------------------------


@pytest.mark.parametrize("settings, named", [
    ({"twilio.account_sid": ""}, "twilio.account_sid"),
    ({"twilio.account_sid": "AC123"}, "twilio.account_sid"),
    ({"twilio.auth_token": ""}, "GG_TWILIO_AUTH_TOKEN"),
    ({"twilio.from_number": ""}, "exactly one of 'twilio.from_number'"),
    ({"twilio.messaging_service_sid": "MG" + "a" * 32}, "exactly one of 'twilio.from_number'"),
    ({"twilio.from_number": "07700 900123"}, "E.164"),
    ({"twilio.from_number": "", "twilio.messaging_service_sid": "MG1"}, "twilio.messaging_service_sid"),
])
def test_settings_that_cannot_send_stop_startup_naming_the_setting(make_app, twilio_stub, settings, named):
    with pytest.raises(SettingsError, match=named):
        make_app(twilio_stub.settings(**settings))


def test_unused_twilio_settings_do_not_stop_startup(make_app):
    make_app({"twilio.account_sid": ""})  # SMS goes through the console provider


# --- through the outbox --------------------------------------------------------


def test_a_queued_text_is_sent_and_its_sid_recorded(make_app, run_in_request, twilio_stub):
    app = make_app(twilio_stub.settings(**{"huey.immediate": "false"}))
    registry = app.app.registry
    notification_id = run_in_request(lambda request: queue_notification(
        request.ctx, channel="sms", recipient=RECIPIENT, template="test_message",
        context={"base_url": "https://gg.example"}).id, registry)
    assert twilio_stub.received == [], "nothing is sent before the task runs"
    drain(registry["huey"])  # the delivery, then its notification.sent event
    [form] = twilio_stub.sent
    assert form["Body"] == "GuestGuard test message from https://gg.example: SMS delivery works."
    row = run_in_request(lambda request: request.db.get(Notification, notification_id), registry)
    assert (row.status, row.provider, row.provider_message_id) == ("succeeded", "twilio", row.provider_message_id)
    assert row.provider_message_id.startswith("SM")


def test_a_text_over_the_cap_is_refused_when_queued_and_nothing_is_stored(make_app, run_in_request, twilio_stub):
    app = make_app(twilio_stub.settings(**{"notifications.sms.max_segments": "1"}))
    registry = app.app.registry
    with pytest.raises(MessageTooLong, match="this text is 2 SMS segments long, the limit is 1"):
        run_in_request(lambda request: queue_notification(
            request.ctx, channel="sms", recipient=RECIPIENT, template="test_message",
            context={"base_url": "https://" + "x" * 120 + ".example"}), registry)
    assert run_in_request(lambda request: request.db.scalars(select(Notification)).all(), registry) == []


def test_a_number_twilio_knows_opted_out_is_suppressed_and_the_next_text_is_not_sent(
        make_app, run_in_request, twilio_stub):
    app = make_app(twilio_stub.settings())
    registry = app.app.registry
    twilio_stub.answer(400, 21610)

    def queue(request):
        return queue_notification(request.ctx, channel="sms", recipient=RECIPIENT, template="test_message",
                                  context={"base_url": "https://gg.example"}).id

    first = run_in_request(queue, registry)
    second = run_in_request(queue, registry)
    rows = run_in_request(lambda request: {n.id: (n.status, n.last_error) for n in request.db.scalars(
        select(Notification))}, registry)
    assert rows[first][0] == "suppressed"
    assert "replied STOP" in rows[first][1]
    assert rows[second] == ("suppressed", "suppressed: the recipient texted STOP")
    assert len(twilio_stub.received) == 1, "the second text never reached Twilio"
    [listed] = run_in_request(lambda request: [(s.channel, s.address, s.scope, s.reason, s.source)
                                               for s in request.db.scalars(select(Suppression))], registry)
    assert listed == ("sms", RECIPIENT, "*", "stop", "twilio")


def test_send_test_sends_a_text_through_twilio(tmp_path, twilio_stub):
    """`guestguard send-test <ini> --channel sms` with the plugin chosen by
    the environment; the immediate queue delivers it in the command."""
    ini = site_ini(tmp_path)
    env = {"GG_" + name.upper().replace(".", "_"): value for name, value in twilio_stub.settings().items()}
    env["GG_HUEY_IMMEDIATE"] = "true"
    assert guestguard_command("migrate", str(ini)).returncode == 0
    result = guestguard_command("send-test", str(ini), "--to", RECIPIENT, "--channel", "sms", env=env)
    assert result.returncode == 0, result.stderr
    assert "queued notification" in result.stdout
    [form] = twilio_stub.sent
    assert form["To"] == RECIPIENT
    assert form["Body"].startswith("GuestGuard test message from ")
    assert form["Body"].endswith(": SMS delivery works.")
    assert twilio_stub.auth_token not in result.stdout + result.stderr


def test_the_cores_limit_for_a_send_caps_twilio_timeout(twilio_stub):
    provider = provider_for(twilio_stub, timeout=10)
    twilio_stub.answer(pause=2.5)
    with pytest.raises(TransientDeliveryError, match="ReadTimeout"):
        provider.send(dataclasses.replace(text(), timeout=1.0))  # the core waits 1 s, less than twilio.timeout
    assert provider.client_for(1.0) is provider.client_for(1.0)  # one client per limit
    assert provider.client_for(0) is not provider.client_for(1.0)
