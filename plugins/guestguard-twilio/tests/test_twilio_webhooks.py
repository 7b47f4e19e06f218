"""Twilio's status callbacks and incoming texts: signed as Twilio signs them
(twilio's RequestValidator scheme, keyed with the auth token, over the
public URL), stored in the webhook inbox, applied by the worker; and the
whole loop from a text sent through the SDK to the next one suppressed."""
from __future__ import annotations

import threading
import uuid
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import OPERATOR, suppress
from guestguard.testing import drain, new_client
from guestguard.webhooks.models import InboxEntry

NUMBER = "+447911123456"
STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def sid() -> str:
    return "SM" + uuid.uuid4().hex


@pytest.fixture
def app(make_app, twilio_stub):
    return make_app(twilio_stub.settings(**{"huey.immediate": "false", "db.pool_size": "6"}))


def signed(stub, path: str, form: dict[str, str], url: str | None = None, token: str | None = None) -> dict:
    """The headers Twilio sends with ``form`` posted to ``path``."""
    validator = RequestValidator(stub.auth_token if token is None else token)
    return {"X-Twilio-Signature": validator.compute_signature(url or stub.public_base_url + path, form)}


def post(app, stub, path, form, status, **sign):
    return app.post(path, urlencode(form), headers=signed(stub, path, form, **sign),
                    content_type="application/x-www-form-urlencoded", status=status)


def status_form(stub, message_sid: str, status: str, code: str = "") -> dict[str, str]:
    form = {"MessageSid": message_sid, "SmsSid": message_sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": stub.account_sid, "From": stub.from_number, "To": NUMBER, "ApiVersion": "2010-04-01"}
    if code:
        form["ErrorCode"] = code
    return form


def text_form(stub, body: str, sender: str = NUMBER) -> dict[str, str]:
    return {"MessageSid": sid(), "AccountSid": stub.account_sid, "From": sender, "To": stub.from_number,
            "Body": body, "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}


def in_db(app, run_in_request, func_):
    return run_in_request(lambda request: func_(request.db), app.app.registry)


def inbox(app, run_in_request):
    return in_db(app, run_in_request, lambda db: [(e.event_id, e.status, e.note) for e in db.scalars(
        select(InboxEntry).order_by(InboxEntry.received_at))])


def suppressions(app, run_in_request):
    return in_db(app, run_in_request, lambda db: [(s.address, s.reason, s.source, s.scope)
                                                  for s in db.scalars(select(Suppression))])


def send_text(app, run_in_request) -> uuid.UUID:
    """Queue a text to NUMBER and let the worker send it (to the stub)."""
    notification_id = run_in_request(lambda request: queue_notification(
        request.ctx, channel="sms", recipient=NUMBER, template="test_message",
        context={"base_url": "https://gg.example"}).id, app.app.registry)
    drain(app.app.registry["huey"])
    return notification_id


def notification(app, run_in_request, notification_id):
    return in_db(app, run_in_request, lambda db: db.get(Notification, notification_id))


# --- the whole loop ----------------------------------------------------------------


def test_undelivered_to_a_dead_number_suppresses_it_and_the_next_text_ends_suppressed(
        app, run_in_request, twilio_stub):
    first = send_text(app, run_in_request)
    sent = notification(app, run_in_request, first)
    assert (sent.provider, sent.delivery_state) == ("twilio", "sent")
    assert sent.provider_message_id.startswith("SM")

    post(app, twilio_stub, STATUS, status_form(twilio_stub, sent.provider_message_id, "undelivered", "30005"), 204)
    assert suppressions(app, run_in_request) == [], "nothing acts before the worker"
    drain(app.app.registry["huey"])

    bounced = notification(app, run_in_request, first)
    assert bounced.delivery_state == "bounced"
    assert bounced.delivery_detail == "Twilio 30005: the number does not exist or is no longer in service"
    assert suppressions(app, run_in_request) == [(NUMBER, "hard_bounce", "twilio", "*")]

    second = send_text(app, run_in_request)
    held = notification(app, run_in_request, second)
    assert (held.status, held.delivery_state) == ("suppressed", "suppressed")
    assert len(twilio_stub.sent) == 1, "the second text never reached Twilio"


def test_a_stop_text_suppresses_the_sender_and_start_lifts_it(app, run_in_request, twilio_stub):
    send_text(app, run_in_request)
    answer = post(app, twilio_stub, INBOUND, text_form(twilio_stub, "  Stop \n"), 200)
    assert answer.content_type == "text/xml"
    assert answer.text == TWIML
    drain(app.app.registry["huey"])
    assert suppressions(app, run_in_request) == [(NUMBER, "stop", "twilio", "*")]
    held = notification(app, run_in_request, send_text(app, run_in_request))
    assert (held.status, held.last_error) == ("suppressed", "suppressed: the recipient texted STOP")
    assert len(twilio_stub.sent) == 1

    post(app, twilio_stub, INBOUND, text_form(twilio_stub, "start"), 200)
    drain(app.app.registry["huey"])
    assert suppressions(app, run_in_request) == []
    assert notification(app, run_in_request, send_text(app, run_in_request)).delivery_state == "sent"
    assert len(twilio_stub.sent) == 2
    notes = [note for _, _, note in inbox(app, run_in_request)]
    assert notes == ["STOP: the sender is suppressed (reason stop)", "START: the STOP was lifted"]


@pytest.mark.parametrize("word", ["STOP", "stopall", "Unsubscribe", "CANCEL", "end", "QUIT", "\tstop\r\n"])
def test_every_opt_out_word_suppresses(app, run_in_request, twilio_stub, word):
    post(app, twilio_stub, INBOUND, text_form(twilio_stub, word), 200)
    drain(app.app.registry["huey"])
    assert suppressions(app, run_in_request) == [(NUMBER, "stop", "twilio", "*")]


@pytest.mark.parametrize("body", ["HELP", "help", "Stop it, please", "STOP STOP", "", "Thanks! See you there"])
def test_help_and_other_texts_are_answered_and_not_kept(app, run_in_request, twilio_stub, body):
    answer = post(app, twilio_stub, INBOUND, text_form(twilio_stub, body), 200)
    assert answer.text == TWIML
    assert inbox(app, run_in_request) == []


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_start_lifts_only_a_stop_never_an_operators_block(app, run_in_request, twilio_stub, word):
    registry = app.app.registry
    run_in_request(lambda request: suppress(request.ctx, "sms", NUMBER, OPERATOR, source="operator"), registry)
    post(app, twilio_stub, INBOUND, text_form(twilio_stub, word), 200)
    drain(registry["huey"])
    assert suppressions(app, run_in_request) == [(NUMBER, "operator", "operator", "*")]
    assert inbox(app, run_in_request)[0][2] == f"{word.upper()}: no STOP to lift"


def test_a_sender_that_is_no_phone_number_is_noted_not_retried(app, run_in_request, twilio_stub):
    post(app, twilio_stub, INBOUND, text_form(twilio_stub, "STOP", sender="GuestGuard"), 200)
    drain(app.app.registry["huey"])
    [(_, status, note)] = inbox(app, run_in_request)
    assert status == "succeeded"
    assert note == "STOP: the sender is not a number the suppression list can hold; nothing done"


# --- statuses ------------------------------------------------------------------------


def test_statuses_move_forward_only_and_a_repeat_is_a_no_op(app, run_in_request, twilio_stub):
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    message_sid = sent.provider_message_id
    post(app, twilio_stub, STATUS, status_form(twilio_stub, message_sid, "delivered"), 204)
    post(app, twilio_stub, STATUS, status_form(twilio_stub, message_sid, "sent"), 204)  # late
    post(app, twilio_stub, STATUS, status_form(twilio_stub, message_sid, "delivered"), 204)  # replayed
    drain(app.app.registry["huey"])
    row = notification(app, run_in_request, sent.id)
    assert row.delivery_state == "delivered"
    assert row.delivered_at is not None
    assert [event_id for event_id, _, _ in inbox(app, run_in_request)] == [
        f"status:{message_sid}:delivered", f"status:{message_sid}:sent"]


@pytest.mark.parametrize("status, code, state, detail", [
    ("queued", "", "sent", None),
    ("sending", "", "sent", None),
    ("delivered", "", "delivered", None),
    ("read", "", "delivered", None),
    ("undelivered", "30003", "failed", "undelivered, Twilio 30003: the phone was switched off or out of coverage"),
    ("undelivered", "30007", "failed", "undelivered, Twilio 30007: a carrier filtered the message as spam"),
    ("undelivered", "30004", "bounced", "Twilio 30004: the recipient's carrier or the recipient blocks our messages"),
    ("undelivered", "30006", "bounced",
     "Twilio 30006: the number cannot receive text messages (a landline, or an unreachable carrier)"),
    ("failed", "30001", "failed", "failed, Twilio 30001: see Twilio's error code"),
    ("failed", "", "failed", "failed: Twilio gave no reason"),
    ("canceled", "", "failed", "canceled: Twilio gave no reason"),
])
def test_each_status_becomes_its_delivery_state(app, run_in_request, twilio_stub, status, code, state, detail):
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    post(app, twilio_stub, STATUS, status_form(twilio_stub, sent.provider_message_id, status, code), 204)
    drain(app.app.registry["huey"])
    row = notification(app, run_in_request, sent.id)
    assert (row.delivery_state, row.delivery_detail) == (state, detail)
    bounced = state == "bounced"
    assert suppressions(app, run_in_request) == ([(NUMBER, "hard_bounce", "twilio", "*")] if bounced else [])


def test_segments_and_price_are_kept_when_a_callback_carries_them(app, run_in_request, twilio_stub):
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    message_sid = sent.provider_message_id
    post(app, twilio_stub, STATUS, {**status_form(twilio_stub, message_sid, "sent"), "NumSegments": "2"}, 204)
    post(app, twilio_stub, STATUS, {**status_form(twilio_stub, message_sid, "delivered"), "NumSegments": "2",
                                    "Price": "-0.01580", "PriceUnit": "USD"}, 204)
    drain(app.app.registry["huey"])
    row = notification(app, run_in_request, sent.id)
    assert (row.delivery_state, row.segments, row.price, row.price_unit) == ("delivered", 2, "-0.01580", "USD")
    assert inbox(app, run_in_request)[1][2].endswith("2 segment(s), price -0.01580 USD")


@pytest.mark.parametrize("extra, left_out", [
    ({"NumSegments": "lots"}, "segments"), ({"NumSegments": "0"}, "segments"), ({"NumSegments": "101"}, "segments"),
    ({"Price": "free", "PriceUnit": "USD"}, "price"), ({"Price": "-0.0158", "PriceUnit": "dollars"}, "price"),
    ({"Price": "-0.0158"}, "price"),
])
def test_a_cost_twilio_never_writes_is_left_out_and_named(app, run_in_request, twilio_stub, extra, left_out):
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    post(app, twilio_stub, STATUS, {**status_form(twilio_stub, sent.provider_message_id, "delivered"), **extra}, 204)
    drain(app.app.registry["huey"])
    row = notification(app, run_in_request, sent.id)
    assert (row.delivery_state, row.segments, row.price, row.price_unit) == ("delivered", None, None, None)
    assert inbox(app, run_in_request)[0][2].endswith(f"no cost reported ({left_out} unreadable, left out)")


def test_a_failure_because_the_number_opted_out_suppresses_it_with_stop(app, run_in_request, twilio_stub):
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    post(app, twilio_stub, STATUS, status_form(twilio_stub, sent.provider_message_id, "failed", "21610"), 204)
    drain(app.app.registry["huey"])
    assert notification(app, run_in_request, sent.id).delivery_state == "failed"
    assert suppressions(app, run_in_request) == [(NUMBER, "stop", "twilio", "*")]


def test_a_status_for_a_message_we_never_sent_is_noted_and_not_retried(app, run_in_request, twilio_stub):
    unknown = sid()
    post(app, twilio_stub, STATUS, status_form(twilio_stub, unknown, "delivered"), 204)
    drain(app.app.registry["huey"])
    [(_, status, note)] = inbox(app, run_in_request)
    assert status == "succeeded"
    assert unknown in note
    assert "nothing to update" in note


# --- who may call ---------------------------------------------------------------------


def test_a_forged_or_unsigned_call_is_refused_and_nothing_is_stored(app, run_in_request, twilio_stub):
    form = status_form(twilio_stub, sid(), "delivered")
    body = urlencode(form)
    for path in (STATUS, INBOUND):
        app.post(path, body, content_type="application/x-www-form-urlencoded", status=403)
        post(app, twilio_stub, path, form, 403, token="not-the-auth-token")
        headers = signed(twilio_stub, path, form)
        tampered = urlencode({**form, "MessageStatus": "undelivered", "ErrorCode": "30005"})
        app.post(path, tampered, headers=headers, content_type="application/x-www-form-urlencoded", status=403)
    assert inbox(app, run_in_request) == []


def test_the_signature_is_checked_against_the_public_url_not_the_host_header(app, run_in_request, twilio_stub):
    """Behind a proxy the app sees another host; Twilio signed the public URL."""
    form = status_form(twilio_stub, sid(), "delivered")
    proxied = new_client(app.app, HTTP_HOST="10.0.0.7:8080", HTTP_X_FORWARDED_PROTO="http")
    proxied.post(STATUS, urlencode(form), headers=signed(twilio_stub, STATUS, form),
                 content_type="application/x-www-form-urlencoded", status=204)
    as_host_sees_it = signed(twilio_stub, STATUS, form, url=f"http://10.0.0.7:8080{STATUS}")
    proxied.post(STATUS, urlencode(form), headers=as_host_sees_it,
                 content_type="application/x-www-form-urlencoded", status=403)
    assert len(inbox(app, run_in_request)) == 1


def test_without_an_auth_token_every_call_is_refused(make_app, run_in_request, twilio_stub):
    """An empty key would let anyone sign: an unconfigured plugin takes nothing."""
    app = make_app({"twilio.auth_token": ""})
    form = status_form(twilio_stub, sid(), "delivered")
    post(app, twilio_stub, STATUS, form, 403, token="")
    post(app, twilio_stub, INBOUND, text_form(twilio_stub, "STOP"), 403, token="")
    assert inbox(app, run_in_request) == []


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("change, named", [
    ({"MessageSid": ""}, "MessageSid"),
    ({"MessageSid": "SM123"}, "MessageSid"),
    ({"MessageSid": "SM" + "G" * 32}, "MessageSid"),
    ({"MessageStatus": "exploded"}, "MessageStatus"),
    ({"MessageStatus": "DELIVERED"}, "MessageStatus"),
])
def test_a_signed_call_with_fields_twilio_never_sends_is_a_400_naming_the_field(
        app, run_in_request, twilio_stub, change, named):
    form = {**status_form(twilio_stub, sid(), "delivered"), **change}
    answer = post(app, twilio_stub, STATUS, form, 400)
    assert f"{named} is missing or not one Twilio sends." in answer.text
    assert inbox(app, run_in_request) == []


def test_a_signed_body_that_is_not_a_form_is_a_400(app, run_in_request, twilio_stub):
    headers = signed(twilio_stub, STATUS, {})
    answer = app.post(STATUS, '{"MessageSid": "x"}', headers=headers, content_type="application/json", status=400)
    assert "must be a form" in answer.text
    assert inbox(app, run_in_request) == []


@pytest.mark.parametrize("body, status", [
    (b"MessageSid=SM%00", 400),        # a NUL: the input guard's 400, before the view
    (b"MessageSid=\xff", 400),         # bytes that are not UTF-8
    (b"Body=%ED%A0%80", 403),          # a lone surrogate, percent-encoded: no signature covers it
    (b"Body=%FF%FE", 403),
])
def test_nul_surrogates_and_bytes_that_are_not_utf8_are_refused_and_not_stored(
        app, run_in_request, twilio_stub, body, status):
    headers = {"X-Twilio-Signature": "anything"}
    for path in (STATUS, INBOUND):
        app.post(path, body, headers=headers, content_type="application/x-www-form-urlencoded", status=status)
    assert inbox(app, run_in_request) == []


def test_an_oversized_body_is_a_413_before_anything_reads_it(make_app, run_in_request, twilio_stub):
    app = make_app(twilio_stub.settings(**{"webhooks.max_payload_bytes": "2048"}))
    form = {**status_form(twilio_stub, sid(), "delivered"), "Padding": "x" * 3000}
    post(app, twilio_stub, STATUS, form, 413)
    post(app, twilio_stub, INBOUND, {**text_form(twilio_stub, "STOP"), "Padding": "x" * 3000}, 413)
    assert inbox(app, run_in_request) == []


def test_only_post_is_answered(app, twilio_stub):
    app.get(STATUS, status=404)
    app.get(INBOUND, status=404)


# --- at the same moment ------------------------------------------------------------------


def test_the_same_callback_twice_at_once_is_stored_and_applied_once(app, run_in_request, twilio_stub):
    """On PostgreSQL the two requests really race on the inbox's unique key."""
    sent = notification(app, run_in_request, send_text(app, run_in_request))
    form = status_form(twilio_stub, sent.provider_message_id, "undelivered", "30005")
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def deliver() -> None:
        client = new_client(app.app)
        barrier.wait()
        statuses.append(client.post(STATUS, urlencode(form), headers=signed(twilio_stub, STATUS, form),
                                    content_type="application/x-www-form-urlencoded", status="*").status_int)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [204, 204]
    drain(app.app.registry["huey"])
    assert len(inbox(app, run_in_request)) == 1
    assert in_db(app, run_in_request, lambda db: db.scalar(select(func.count()).select_from(Suppression))) == 1
    assert notification(app, run_in_request, sent.id).delivery_state == "bounced"
