"""GuestGuard plugin: deliver email through an SMTP server, standard library only.

Every message gets its own connection: workers send one notification at a
time, and a fresh session never inherits the broken state of an earlier
failure.

How failures are reported to the outbox (which retries transient ones):

* a 5xx answer to MAIL FROM, RCPT TO or DATA concerns this message (unknown
  mailbox, rejected content), so it is a PermanentDeliveryError;
* 4xx answers, refused, dropped or timed-out connections and TLS failures are
  TransientDeliveryError;
* whatever fails *before* MAIL FROM -- greeting, EHLO, STARTTLS and the login,
  including SMTPAuthenticationError -- says nothing about the message and
  everything about the server or our settings. It is transient on purpose: once
  the operator fixes the server or the credentials, the queued messages go out
  on their next attempt instead of all having been marked failed. For the same
  reason a 530 ("authentication required") is transient wherever it comes.

Message bodies and credentials never reach a log line or an error message.
"""
from __future__ import annotations

import dataclasses
import logging
import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from guestguard.mime import compose
from guestguard.plugins import (
    OutgoingMessage,
    PermanentDeliveryError,
    Setting,
    SettingsError,
    TransientDeliveryError,
    as_choice,
    as_int,
    as_str,
    hookimpl,
)

__all__ = [
    "SMTPConfig",
    "SMTPProvider",
    "compose",
    "register_notification_providers",
    "register_settings",
]

log = logging.getLogger(__name__)

SECURITY_MODES = ("none", "starttls", "tls")


@dataclasses.dataclass(frozen=True)
class SMTPConfig:
    """Connection settings; the defaults are also the settings' defaults."""

    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    timeout: float = 10
    local_hostname: str = ""

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise SettingsError(
                f"setting 'smtp.security' must be one of {', '.join(SECURITY_MODES)}")
        if self.username and not self.password:
            raise SettingsError(
                "setting 'smtp.password' is required when 'smtp.username' is set "
                "(set GG_SMTP_PASSWORD)")
        if self.password and not self.username:
            raise SettingsError(
                "setting 'smtp.username' is required when 'smtp.password' is set")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SMTPConfig:
        values = {field.name: settings[f"smtp.{field.name}"]
                  for field in dataclasses.fields(cls) if f"smtp.{field.name}" in settings}
        return cls(**values)


class SMTPProvider:
    """Sends the ``email`` channel through the server named by ``smtp.*``."""

    name = "smtp"
    channels = ("email",)

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config

    def send(self, message: OutgoingMessage) -> str:
        try:
            email = compose(message, fallback_domain=self.config.local_hostname or "localhost")
        except ValueError as exc:
            # e.g. a line break in a header: the same message would fail again.
            raise PermanentDeliveryError(f"message cannot be encoded as email: {exc}") from exc
        # The core says how long a send may take; smtp.timeout may be shorter.
        client = self._open_session(min(self.config.timeout, message.timeout or self.config.timeout))
        try:
            client.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            # One recipient per message; should there be more, any 4xx among
            # the refusals keeps the message retriable.
            code, text = min(exc.recipients.values())
            raise self._by_code("refused the recipient", code, text) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # An internationalised address this server cannot carry.
            raise PermanentDeliveryError(f"SMTP server {self.config.host}: {exc}") from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            raise self._by_code("refused the message", exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            client.close()  # the session state is unknown: do not wait for a QUIT answer
            raise TransientDeliveryError(
                f"SMTP server {self.config.host}:{self.config.port} failed during "
                f"sending: {self._describe(exc)}") from exc
        finally:
            _close(client)
        message_id = email["Message-ID"]
        log.info("smtp provider handed notification %s to %s as %s",
                 message.notification_id, self.config.host, message_id)
        return message_id

    def _open_session(self, timeout: float) -> smtplib.SMTP:
        """Connect, secure and log in, each socket operation bounded by
        ``timeout`` seconds; every failure here is transient."""
        cfg = self.config
        where = f"SMTP server {cfg.host}:{cfg.port}"
        local_hostname = cfg.local_hostname or None
        try:
            if cfg.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, local_hostname, timeout=timeout,
                    context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, local_hostname, timeout=timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientDeliveryError(
                f"cannot connect to {where}: {self._describe(exc)}") from exc
        try:
            if cfg.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if cfg.username:
                client.login(cfg.username, cfg.password)
            client.ehlo_or_helo_if_needed()
        except smtplib.SMTPAuthenticationError as exc:
            _close(client)
            raise TransientDeliveryError(
                f"{where} rejected the login of smtp.username "
                f"(check smtp.username and smtp.password): {self._describe(exc)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            client.close()  # the session may be half-secured or stalled: no QUIT
            raise TransientDeliveryError(
                f"cannot open a session with {where} "
                f"(smtp.security = {cfg.security}): {self._describe(exc)}") from exc
        return client

    def _by_code(self, what: str, code: int,
                 text: bytes | str) -> PermanentDeliveryError | TransientDeliveryError:
        detail = f"SMTP server {self.config.host} {what}: {code} {self._text(text)}"
        if code == 530:
            # "Authentication required" (RFC 4954) is about our settings, not
            # the message: transient, like a failed login.
            return TransientDeliveryError(
                f"{detail} (the server wants a login: set smtp.username and smtp.password)")
        if 500 <= code < 600:
            return PermanentDeliveryError(detail)
        return TransientDeliveryError(detail)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"{exc.smtp_code} {self._text(exc.smtp_error)}"
        return f"{type(exc).__name__}: {self._text(str(exc))}"

    def _text(self, text: bytes | str) -> str:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = " ".join(text.split())
        # Servers have no business echoing the password; make sure we never pass it on.
        if self.config.password:
            text = text.replace(self.config.password, "********")
        return text


def _close(client: smtplib.SMTP) -> None:
    # By now the server has accepted or refused the message; a failing QUIT
    # must not turn that outcome into an error.
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


# --- hooks --------------------------------------------------------------------


@hookimpl
def register_settings() -> list[Setting]:
    d = SMTPConfig
    return [
        Setting("smtp.host", as_str, d.host, "SMTP server host name."),
        Setting("smtp.port", as_int(1, 65535), d.port,
                "SMTP server port: usually 587 (starttls), 465 (tls) or 25 (none)."),
        Setting("smtp.security", as_choice(*SECURITY_MODES), d.security,
                "none (plain text), starttls (upgrade after connecting) or tls "
                "(TLS from the start). Certificates are verified against the system CAs."),
        Setting("smtp.username", as_str, d.username,
                "Login name; empty means no login. Needs smtp.password."),
        # str, not as_str: a password keeps any surrounding spaces.
        Setting("smtp.password", str, d.password, "Password for smtp.username.", secret=True),
        Setting("smtp.timeout", as_int(1, 120), int(d.timeout),
                "Seconds to wait for the server on each network operation."),
        Setting("smtp.local_hostname", as_str, d.local_hostname,
                "Name sent in EHLO; empty means this machine's fully qualified name."),
    ]


@hookimpl
def register_notification_providers(settings: Mapping[str, Any]) -> list[SMTPProvider]:
    config = SMTPConfig.from_settings(settings)
    if config.username and config.security == "none":
        log.warning("smtp.username is set while smtp.security = none: "
                    "the SMTP password crosses the network unencrypted")
    return [SMTPProvider(config)]
