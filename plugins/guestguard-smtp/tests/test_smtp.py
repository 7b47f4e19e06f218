"""guestguard-smtp against real SMTP servers: aiosmtpd sinks on 127.0.0.1,
plain, STARTTLS, implicit TLS and authenticating, plus raw sockets that
refuse, hang or hang up."""
from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

import guestguard_smtp
from guestguard.plugins import (
    NotificationProvider,
    OutgoingMessage,
    PermanentDeliveryError,
    SettingsError,
    TransientDeliveryError,
)
from guestguard.settings import SettingsReader
from guestguard_smtp import SMTPConfig, SMTPProvider

SENDER = "GuestGuard <no-reply@gg.example>"
USERNAME = "host@gg.example"
PASSWORD = "c0rrect horse"

# The sinks run AUTH without TLS on purpose; aiosmtpd rightly warns about that.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning")


# --- sinks -------------------------------------------------------------------


class RecordingHandler:
    """Accepts mail and keeps it; answers ``rcpt_replies[address]`` to that
    recipient and ``data_reply`` (when set) to every DATA."""

    def __init__(self, rcpt_replies: dict[str, str] | None = None,
                 data_reply: str | None = None) -> None:
        self.rcpt_replies = rcpt_replies or {}
        self.data_reply = data_reply
        self.received: list[tuple[Envelope, Session]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.received.append((envelope, session))
        return "250 Message accepted for delivery"

    def only_message(self) -> tuple[Envelope, EmailMessage, Session]:
        assert len(self.received) == 1, f"expected one message, got {len(self.received)}"
        envelope, session = self.received[0]
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        return envelope, parsed, session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_sink() -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(handler: RecordingHandler | None = None, **smtp_kwargs: Any):
        handler = handler or RecordingHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **smtp_kwargs)
        controller.start()
        controllers.append(controller)
        return handler, controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def sink(start_sink) -> tuple[RecordingHandler, int]:
    return start_sink()


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USERNAME.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_sink(start_sink) -> tuple[RecordingHandler, int]:
    return start_sink(authenticator=authenticator, auth_required=True, auth_require_tls=False)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 it signed:
    (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guestguard-smtp test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


@pytest.fixture
def server_tls_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files[1], tls_files[2])
    return context


@pytest.fixture
def trust_test_ca(monkeypatch, tls_files) -> None:
    # The provider verifies against the default trust store; OpenSSL reads
    # SSL_CERT_FILE each time a default context loads it.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def refused_port() -> int:
    return free_port()  # bound, then closed: nothing listens there


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections (the kernel's backlog) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


@pytest.fixture
def hangup_port() -> Iterator[int]:
    """Accepts each connection and closes it straight away."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    server.close()
    thread.join(timeout=2)


# --- helpers -----------------------------------------------------------------


def outgoing(recipient: str = "ada@example.org", *, html: str = "<p>Dear Ada, <b>come</b>.</p>",
             subject: str = "You are invited: Summer party",
             text: str = "Dear Ada,\nopen https://gg.example/i/abc to RSVP.",
             unsubscribe_url: str = "", reply_to: str = "", timeout: float = 0.0) -> OutgoingMessage:
    return OutgoingMessage(notification_id=uuid.uuid4(), channel="email", recipient=recipient,
                           sender=SENDER, subject=subject, text=text, html=html, unsubscribe_url=unsubscribe_url,
                           reply_to=reply_to, timeout=timeout)


def provider(port: int, **overrides: Any) -> SMTPProvider:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none",
                              "timeout": 5}
    values.update(overrides)
    return SMTPProvider(SMTPConfig(**values))


def body(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


def parts_by_type(message: EmailMessage) -> dict[str, EmailMessage]:
    return {part.get_content_type(): part for part in message.walk()
            if not part.is_multipart()}


# --- the provider -------------------------------------------------------------


def test_html_message_arrives_as_multipart_alternative(sink):
    handler, port = sink
    message = outgoing()

    message_id = provider(port).send(message)

    envelope, received, _ = handler.only_message()
    assert envelope.mail_from == "no-reply@gg.example"
    assert envelope.rcpt_tos == ["ada@example.org"]
    assert received["Subject"] == "You are invited: Summer party"
    assert received["From"] == SENDER
    assert received["To"] == "ada@example.org"
    assert received["Message-ID"] == message_id
    assert message_id.startswith("<") and message_id.endswith("@gg.example>")
    assert received["X-GuestGuard-Notification-Id"] == str(message.notification_id)
    sent_at = parsedate_to_datetime(received["Date"])
    assert abs(dt.datetime.now(dt.UTC) - sent_at) < dt.timedelta(minutes=1)
    assert received.get_content_type() == "multipart/alternative"
    parts = parts_by_type(received)
    assert sorted(parts) == ["text/html", "text/plain"]
    assert body(parts["text/plain"]) == message.text
    assert body(parts["text/html"]) == message.html


def test_a_guest_message_carries_one_click_unsubscribe_and_account_mail_does_not(sink):
    handler, port = sink
    url = "https://gg.example/unsubscribe/abc"
    smtp = provider(port)

    smtp.send(outgoing(unsubscribe_url=url, reply_to="host@example.org"))
    smtp.send(outgoing())

    guest_mail, account_mail = (email.message_from_bytes(envelope.content, policy=policy.default)
                                for envelope, _ in handler.received)
    assert guest_mail["List-Unsubscribe"] == f"<{url}>"
    assert guest_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert account_mail["List-Unsubscribe"] is None and account_mail["List-Unsubscribe-Post"] is None
    assert guest_mail["Reply-To"] == "host@example.org" and account_mail["Reply-To"] is None


def test_text_only_message_has_no_html_part(sink):
    handler, port = sink

    provider(port).send(outgoing(html=""))

    _, received, _ = handler.only_message()
    assert received.get_content_type() == "text/plain"
    assert list(parts_by_type(received)) == ["text/plain"]
    assert body(received) == outgoing().text


def test_non_ascii_text_survives_the_trip(sink):
    handler, port = sink
    text = "Chère Zoë, voilà — ünïcödé ✓\n" + "long line " * 30

    provider(port).send(outgoing(subject="Zoë, you are invited ✓", text=text))

    envelope, received, _ = handler.only_message()
    assert envelope.content.isascii()  # 7-bit clean: no 8BITMIME needed
    assert received["Subject"] == "Zoë, you are invited ✓"
    assert body(parts_by_type(received)["text/plain"]) == text.rstrip("\n")


def test_message_ids_are_unique(sink):
    handler, port = sink
    smtp = provider(port)

    ids = {smtp.send(outgoing()) for _ in range(3)}

    assert len(ids) == 3
    assert len(handler.received) == 3


def test_the_outbox_message_id_is_sent_on_every_attempt(sink):
    """A message sent again (its first attempt's outcome was lost) carries
    the Message-ID the outbox fixed, so mail clients fold the copies."""
    import dataclasses

    handler, port = sink
    smtp = provider(port)
    message = dataclasses.replace(outgoing(), message_id="<0f1e2d3c4b5a69788796a5b4c3d2e1f0@gg.example>")

    ids = [smtp.send(message) for _ in range(2)]

    assert ids == [message.message_id] * 2
    headers = [email.message_from_bytes(envelope.content, policy=policy.default)["Message-ID"]
               for envelope, _ in handler.received]
    assert headers == [message.message_id] * 2


def test_local_hostname_is_sent_in_ehlo(sink):
    handler, port = sink

    provider(port, local_hostname="mailer.gg.example").send(outgoing())

    _, _, session = handler.only_message()
    assert session.host_name == "mailer.gg.example"


def test_recipient_refused_with_550_is_permanent(start_sink):
    handler, port = start_sink(RecordingHandler(
        rcpt_replies={"gone@example.org": "550 5.1.1 <gone@example.org>: no such user"}))

    with pytest.raises(PermanentDeliveryError) as caught:
        provider(port).send(outgoing("gone@example.org"))

    assert "550" in str(caught.value)
    assert "no such user" in str(caught.value)
    assert handler.received == []


def test_recipient_deferred_with_451_is_transient(start_sink):
    handler, port = start_sink(RecordingHandler(
        rcpt_replies={"busy@example.org": "451 4.7.1 greylisted, try again later"}))

    with pytest.raises(TransientDeliveryError) as caught:
        provider(port).send(outgoing("busy@example.org"))

    assert "451" in str(caught.value) and "greylisted" in str(caught.value)
    assert handler.received == []


def test_data_deferred_with_451_is_transient(start_sink):
    _, port = start_sink(RecordingHandler(data_reply="451 4.3.0 local problem, try later"))

    with pytest.raises(TransientDeliveryError, match="451 4.3.0 local problem"):
        provider(port).send(outgoing())


def test_data_rejected_with_554_is_permanent(start_sink):
    _, port = start_sink(RecordingHandler(data_reply="554 5.6.0 content rejected"))

    with pytest.raises(PermanentDeliveryError, match="554 5.6.0 content rejected"):
        provider(port).send(outgoing())


def test_header_injection_is_refused_before_connecting(refused_port):
    # The port is closed: reaching the network would raise TransientDeliveryError.
    with pytest.raises(PermanentDeliveryError, match="cannot be encoded"):
        provider(refused_port).send(outgoing(subject="Hi\r\nBcc: everyone@example.org"))


def test_closed_port_is_transient(refused_port):
    with pytest.raises(TransientDeliveryError) as caught:
        provider(refused_port).send(outgoing())

    assert f"127.0.0.1:{refused_port}" in str(caught.value)
    assert "ConnectionRefusedError" in str(caught.value)


def test_silent_server_times_out_as_transient(silent_port):
    with pytest.raises(TransientDeliveryError, match="timed out"):
        provider(silent_port, timeout=0.3).send(outgoing())


def test_the_cores_send_timeout_bounds_a_longer_smtp_timeout(silent_port):
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError, match="timed out"):
        provider(silent_port, timeout=30).send(outgoing(timeout=0.3))
    assert time.monotonic() - started < 5


def test_server_hanging_up_is_transient(hangup_port):
    with pytest.raises(TransientDeliveryError, match="SMTPServerDisconnected"):
        provider(hangup_port).send(outgoing())


def test_login_with_the_right_credentials_delivers(auth_sink):
    handler, port = auth_sink

    provider(port, username=USERNAME, password=PASSWORD).send(outgoing())

    _, received, session = handler.only_message()
    assert session.authenticated is True
    assert received["Subject"] == "You are invited: Summer party"


def test_wrong_password_is_transient_and_never_echoed(auth_sink):
    handler, port = auth_sink
    wrong = "not-the-s3cret"

    with pytest.raises(TransientDeliveryError) as caught:
        provider(port, username=USERNAME, password=wrong).send(outgoing())

    text = str(caught.value)
    assert "535" in text and "smtp.username" in text
    assert wrong not in text and wrong not in repr(caught.value)
    assert handler.received == []


def test_missing_login_is_transient(auth_sink):
    _, port = auth_sink

    with pytest.raises(TransientDeliveryError, match="530 .*smtp.username"):
        provider(port).send(outgoing())


def test_starttls_with_a_trusted_certificate(start_sink, server_tls_context, trust_test_ca):
    handler, port = start_sink(tls_context=server_tls_context, require_starttls=True,
                               authenticator=authenticator, auth_required=True)

    provider(port, security="starttls", username=USERNAME, password=PASSWORD).send(outgoing())

    _, received, session = handler.only_message()
    assert session.ssl is not None  # the session really was upgraded
    assert session.authenticated is True
    assert received["To"] == "ada@example.org"


def test_starttls_refuses_an_untrusted_certificate(start_sink, server_tls_context, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    handler, port = start_sink(tls_context=server_tls_context, require_starttls=True)

    with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        provider(port, security="starttls").send(outgoing())

    assert handler.received == []


def test_starttls_against_a_server_without_it_is_transient(sink):
    handler, port = sink

    with pytest.raises(TransientDeliveryError, match="STARTTLS"):
        provider(port, security="starttls").send(outgoing())

    assert handler.received == []


def test_implicit_tls(start_sink, server_tls_context, trust_test_ca):
    handler, port = start_sink(ssl_context=server_tls_context)

    provider(port, security="tls").send(outgoing())

    _, received, _ = handler.only_message()
    assert received["Subject"] == "You are invited: Summer party"


def test_config_repr_hides_the_password():
    config = SMTPConfig(username=USERNAME, password=PASSWORD)
    assert PASSWORD not in repr(config)


# --- the hooks ------------------------------------------------------------------


def typed_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "smtp.host": "127.0.0.1", "smtp.port": 587, "smtp.security": "none",
        "smtp.username": "", "smtp.password": "", "smtp.timeout": 5,
        "smtp.local_hostname": "",
    }
    settings.update({f"smtp.{key}": value for key, value in overrides.items()})
    return settings


def test_register_settings_declares_every_setting_with_its_default():
    declared = {setting.name: setting for setting in guestguard_smtp.register_settings()}

    assert {name: setting.default for name, setting in declared.items()} == {
        "smtp.host": "localhost", "smtp.port": 587, "smtp.security": "starttls",
        "smtp.username": "", "smtp.password": "", "smtp.timeout": 10,
        "smtp.local_hostname": "",
    }
    assert [name for name, setting in declared.items() if setting.secret] == ["smtp.password"]
    assert all(setting.doc for setting in declared.values())


def test_declared_settings_are_typed_and_validated_by_the_core_reader():
    reader = SettingsReader()
    reader.declare(guestguard_smtp.register_settings())

    settings = reader.read({"smtp.port": "2525", "smtp.security": "tls"},
                           {"GG_SMTP_PASSWORD": " spaced pass ", "GG_SMTP_TIMEOUT": "30"})
    assert settings["smtp.port"] == 2525
    assert settings["smtp.security"] == "tls"
    assert settings["smtp.timeout"] == 30
    assert settings["smtp.password"] == " spaced pass "
    assert settings["smtp.host"] == "localhost"
    assert reader.public_view(settings)["smtp.password"] == "********"

    with pytest.raises(SettingsError) as caught:
        reader.read({"smtp.port": "0", "smtp.security": "ssl", "smtp.timeout": "121",
                     "smtp.hots": "x"}, {})
    for name in ("smtp.port", "smtp.security", "smtp.timeout", "smtp.hots"):
        assert name in str(caught.value)


def test_hook_returns_one_email_provider_that_delivers(sink):
    handler, port = sink

    providers = guestguard_smtp.register_notification_providers(typed_settings(port=port))

    assert len(providers) == 1
    [smtp] = providers
    assert isinstance(smtp, NotificationProvider)
    assert (smtp.name, smtp.channels) == ("smtp", ("email",))
    message_id = smtp.send(outgoing())
    _, received, _ = handler.only_message()
    assert received["Message-ID"] == message_id


def test_hook_provider_logs_in_with_configured_credentials(auth_sink):
    handler, port = auth_sink
    settings = typed_settings(port=port, username=USERNAME, password=PASSWORD)

    [smtp] = guestguard_smtp.register_notification_providers(settings)
    smtp.send(outgoing())

    assert handler.only_message()[2].authenticated is True


def test_username_without_password_is_rejected_at_startup():
    with pytest.raises(SettingsError, match="smtp.password"):
        guestguard_smtp.register_notification_providers(typed_settings(username=USERNAME))


def test_password_without_username_is_rejected_at_startup():
    with pytest.raises(SettingsError, match="smtp.username") as caught:
        guestguard_smtp.register_notification_providers(typed_settings(password=PASSWORD))
    assert PASSWORD not in str(caught.value)


def test_entry_point_loads_the_plugin_through_the_core(sink):
    """The installed distribution, found through the ``guestguard`` entry
    point, read by the core's settings path and selected for email."""
    from guestguard import read_settings
    from guestguard.notifications import select_providers
    from guestguard.plugins import collect

    handler, port = sink
    raw = {"db.url": "sqlite:////tmp/unused.sqlite", "huey.url": "memory://", "plugins.strict": "true",
           "notifications.email.provider": "smtp", "smtp.host": "127.0.0.1",
           "smtp.security": "none"}

    settings, pm, _ = read_settings(raw, environ={"GG_SMTP_PORT": str(port)})

    assert pm.get_plugin("smtp") is guestguard_smtp
    providers = collect(pm.hook.register_notification_providers(settings=settings))
    email_provider = select_providers(settings, providers)["email"]
    assert isinstance(email_provider, SMTPProvider)
    email_provider.send(outgoing())
    assert handler.only_message()[1]["To"] == "ada@example.org"


def test_a_notification_sent_through_the_outbox_arrives_with_every_part(sink, make_app, run_in_request):
    """The whole path: a row in the outbox, the dispatch task, this plugin,
    a real SMTP server."""
    from guestguard.notifications.models import Notification
    from guestguard.notifications.services import queue_notification

    handler, port = sink
    app = make_app({"notifications.email.provider": "smtp", "smtp.host": "127.0.0.1",
                    "smtp.port": str(port), "smtp.security": "none",
                    "notifications.email.sender": SENDER})
    registry = app.app.registry

    notification_id = run_in_request(lambda request: queue_notification(
        request.ctx, channel="email", recipient="grace@example.org", template="test_message",
        context={"base_url": "https://gg.example"}).id, registry)

    envelope, parsed, _ = handler.only_message()
    assert envelope.rcpt_tos == ["grace@example.org"]
    assert parsed["Subject"] == "GuestGuard test message"
    assert parsed["From"] == SENDER
    assert parsed["X-GuestGuard-Notification-Id"] == str(notification_id)
    assert "email delivery works" in parsed.get_body(("plain",)).get_content()
    assert '<a href="https://gg.example">' in parsed.get_body(("html",)).get_content()
    row = run_in_request(lambda request: request.db.get(Notification, notification_id), registry)
    assert (row.status, row.provider, row.provider_message_id, row.message_id) == (
        "succeeded", "smtp", parsed["Message-ID"], f"<{notification_id.hex}@gg.example>")
