"""The ses provider against moto's SES server (real boto3 HTTP calls), and
against a local stub for what moto cannot do (throttling, 5xx, silence)."""
from __future__ import annotations

import base64
import email
import socket
import uuid
from email import policy
from urllib.parse import unquote

import pytest

from guestguard.plugins import OutgoingMessage, PermanentDeliveryError, TransientDeliveryError
from guestguard.settings import SettingsReader
from guestguard_ses import register_settings
from guestguard_ses.provider import SESConfig, SESProvider
from guestguard_ses.testing import LocalServer

SENDER = "GuestGuard Events <no-reply@gg.example>"


def config(url: str, **changes) -> SESConfig:
    values = {"region": "eu-west-1", "endpoint_url": url, "access_key_id": "testing", "secret_access_key": "testing",
              "configuration_set": "guestguard-events", "unsubscribe_mailto": "unsubscribe@gg.example",
              "connect_timeout": 2, "read_timeout": 2}
    values.update(changes)
    return SESConfig(**values)


def message(**changes) -> OutgoingMessage:
    notification_id = uuid.uuid4()
    values = {"notification_id": notification_id, "channel": "email", "recipient": "grace@example.com",
              "sender": SENDER, "subject": "You are invited: Harvest Supper", "text": "Come along, Grace.",
              "html": "<p>Come along, <b>Grace</b>.</p>", "message_id": f"<{notification_id.hex}@gg.example>",
              "unsubscribe_url": "https://gg.example/unsubscribe/tok3n"}
    values.update(changes)
    return OutgoingMessage(**values)


def parsed(raw: str) -> email.message.EmailMessage:
    return email.message_from_string(raw, policy=policy.default)


def test_a_guest_message_goes_through_ses_with_its_headers_and_both_parts(ses):
    outgoing = message()
    message_id = SESProvider(config(ses.url)).send(outgoing)
    [sent] = ses.sent()
    assert sent["id"] == message_id, "SES's MessageId is what the core records"
    assert sent["destinations"] == ["grace@example.com"]
    mail = parsed(sent["raw_data"])
    assert mail["Message-ID"] == outgoing.message_id
    assert mail["From"] == SENDER and mail["To"] == "grace@example.com"
    assert mail["Subject"] == "You are invited: Harvest Supper"
    assert mail["X-GuestGuard-Notification-Id"] == str(outgoing.notification_id)
    https, mailto = [part.strip().strip("<>") for part in mail["List-Unsubscribe"].split(",")]
    assert https == "https://gg.example/unsubscribe/tok3n"
    assert mailto.startswith("mailto:unsubscribe@gg.example?subject=unsubscribe&body=")
    assert unquote(mailto.partition("&body=")[2]) == "https://gg.example/unsubscribe/tok3n"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in mail.iter_parts()}
    assert parts == {"text/plain": "Come along, Grace.\r\n", "text/html": "<p>Come along, <b>Grace</b>.</p>\r\n"}


def test_account_mail_has_no_unsubscribe_headers(ses):
    SESProvider(config(ses.url)).send(message(unsubscribe_url="", html=""))
    mail = parsed(ses.sent()[0]["raw_data"])
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None
    assert mail.get_content_type() == "text/plain"


def test_without_a_mailbox_the_https_link_alone_is_offered(ses):
    SESProvider(config(ses.url, unsubscribe_mailto="")).send(message())
    assert parsed(ses.sent()[0]["raw_data"])["List-Unsubscribe"] == "<https://gg.example/unsubscribe/tok3n>"


def test_non_ascii_text_survives(ses):
    SESProvider(config(ses.url)).send(message(subject="Fête d’été 🎉", text="À bientôt, Zoë."))
    mail = parsed(ses.sent()[0]["raw_data"])
    assert mail["Subject"] == "Fête d’été 🎉"
    assert next(mail.iter_parts()).get_content() == "À bientôt, Zoë.\r\n"


def test_an_unverified_sender_is_refused_for_good(moto):
    moto.reset()  # no identity verified
    with pytest.raises(PermanentDeliveryError, match="MessageRejected"):
        SESProvider(config(moto.url)).send(message())
    assert moto.sent() == []


def test_a_header_email_cannot_carry_is_refused_for_good(ses):
    with pytest.raises(PermanentDeliveryError, match="cannot be encoded as email"):
        SESProvider(config(ses.url)).send(message(subject="line\nbreak"))
    assert ses.sent() == []


@pytest.fixture
def stub(request):
    """An SES endpoint answering every send with ``request.param`` (status, JSON body)."""
    server = LocalServer(post_answer=request.param)
    yield server
    server.close()


@pytest.mark.parametrize("stub", [
    (429, {"__type": "TooManyRequestsException", "message": "Maximum sending rate exceeded."}),
    (400, {"__type": "Throttling", "message": "Rate exceeded"}),
    (500, {"__type": "InternalFailure", "message": "oops"}),
    (503, {"__type": "ServiceUnavailable", "message": "later"}),
    (403, {"__type": "AccessDeniedException", "message": "not allowed"}),
], indirect=True)
def test_throttling_server_errors_and_account_refusals_are_transient_and_tried_once(stub):
    with pytest.raises(TransientDeliveryError, match="Amazon SES refused the message"):
        SESProvider(config(stub.base)).send(message())
    assert len(stub.posted) == 1, "botocore does not retry: the outbox does, with its backoff"


@pytest.mark.parametrize("stub", [
    (400, {"__type": "MessageRejected", "message": "Email address is not verified."}),
    (400, {"__type": "BadRequestException", "message": "Illegal address"}),
], indirect=True)
def test_a_rejected_message_or_address_is_permanent(stub):
    with pytest.raises(PermanentDeliveryError, match="Amazon SES refused the message"):
        SESProvider(config(stub.base)).send(message())


@pytest.mark.parametrize("stub", [(200, {"MessageId": "0100-abc"})], indirect=True)
def test_the_request_names_the_configuration_set_and_carries_the_raw_message(stub):
    outgoing = message()
    assert SESProvider(config(stub.base)).send(outgoing) == "0100-abc"
    [request] = stub.posted
    assert request["path"] == "/v2/email/outbound-emails"
    assert request["body"]["ConfigurationSetName"] == "guestguard-events"
    raw = base64.b64decode(request["body"]["Content"]["Raw"]["Data"]).decode()
    assert parsed(raw)["Message-ID"] == outgoing.message_id


@pytest.mark.parametrize("stub", [(200, {"MessageId": "0100-abc"})], indirect=True)
def test_no_configuration_set_is_named_when_none_is_set(stub):
    SESProvider(config(stub.base, configuration_set="")).send(message())
    assert "ConfigurationSetName" not in stub.posted[0]["body"]


def test_a_silent_server_is_a_timeout_and_transient():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(TransientDeliveryError, match="did not answer in time: ReadTimeoutError"):
            SESProvider(config(url, read_timeout=1)).send(message())
    finally:
        listener.close()


def test_nothing_listening_is_transient():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TransientDeliveryError, match="Amazon SES did not answer in time"):
        SESProvider(config(f"http://127.0.0.1:{port}")).send(message())


def test_settings_are_declared_typed_and_checked():
    reader = SettingsReader()
    reader.declare(register_settings())
    values = reader.read({}, {})
    assert (values["ses.region"], values["ses.connect_timeout"], values["ses.sns_signature_versions"]) == (
        "us-east-1", 5, ("1", "2"))
    for raw, named in (({"ses.sns_signature_versions": "3"}, "ses.sns_signature_versions"),
                       ({"ses.sns_certificate_hosts": "("}, "ses.sns_certificate_hosts"),
                       ({"ses.unsubscribe_mailto": "not a mailbox"}, "ses.unsubscribe_mailto"),
                       ({"ses.read_timeout": "0"}, "ses.read_timeout")):
        with pytest.raises(Exception, match=named):
            reader.read(raw, {})


def test_the_cores_limit_for_a_send_caps_the_ses_timeouts(moto):
    provider = SESProvider(config(moto.url, connect_timeout=5, read_timeout=15))
    timeouts = lambda client: (client.meta.config.connect_timeout, client.meta.config.read_timeout)  # noqa: E731
    assert timeouts(provider.client_for(3.0)) == (3.0, 3.0)
    assert timeouts(provider.client_for(0)) == (5, 15)  # no limit from the core: the settings
    assert timeouts(provider.client_for(60.0)) == (5, 15)
    assert provider.client_for(3.0) is provider.client_for(3.0)
