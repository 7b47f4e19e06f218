"""Sending SMS through Twilio's Messages API with the twilio SDK.

How failures are reported to the outbox (which retries transient ones):

* 429, 5xx, timeouts and connection errors are TransientDeliveryError;
* a refusal about our account or sender (bad credentials, a suspended
  account, a From number that cannot send) is transient on purpose, as
  the SMTP plugin does with a refused login: it says nothing about the
  message, and once the operator fixes the settings the queued messages go
  out on their next attempt instead of all having failed;
* any other 4xx concerns this message (an invalid number, a landline, a
  body too long) and is a PermanentDeliveryError. 21610 (the recipient
  replied STOP to our sender earlier) also puts the number on the
  suppression list, reason STOP: Twilio remembers the opt-out, so must we.

Message bodies, numbers and credentials never reach a log line.

The SDK (and requests) is imported with the first client, at the first
send (the task worker's: the outbox sends), not when the plugin loads; the
settings are checked at startup all the same.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guestguard.plugins import (
    OutgoingMessage,
    PermanentDeliveryError,
    SettingsError,
    TransientDeliveryError,
    estimate_segments,
    sms_body,
    too_many_segments,
)

if TYPE_CHECKING:
    from twilio.base.exceptions import TwilioRestException
    from twilio.rest import Client

log = logging.getLogger(__name__)

STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# Twilio error codes about our account or sender, not the message.
ACCOUNT_ERRORS = frozenset({
    20003,  # authentication failed
    20005,  # account not active
    20008,  # test credentials used against the live API
    20404,  # the account (or resource) is not found: wrong account SID
    21212,  # the From number is invalid
    21606,  # the From number cannot send SMS
    21603,  # neither From nor a Messaging Service given
    21703,  # the Messaging Service has no sender
})
UNSUBSCRIBED_RECIPIENT = 21610
# What the codes of a refused message mean, in words: Twilio's own text
# names the number, which must not reach the outbox's error or a log line.
REFUSALS = {
    21211: "the number is not a valid phone number",
    21408: "the Twilio account may not send to this number's region",
    21612: "Twilio cannot route a message to this number",
    21614: "the number is not a mobile number",
    21617: "the text is longer than Twilio accepts",
    UNSUBSCRIBED_RECIPIENT: "the recipient replied STOP to this sender",
}


@dataclasses.dataclass(frozen=True)
class TwilioConfig:
    account_sid: str = ""
    auth_token: str = dataclasses.field(default="", repr=False)
    from_number: str = ""
    messaging_service_sid: str = ""
    # Where Twilio reaches our webhooks (the callback URL it is given and
    # the URL its signatures are made over): this, never the Host header.
    public_base_url: str = ""
    timeout: float = 10
    api_base_url: str = "https://api.twilio.com"
    max_segments: int = 4

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TwilioConfig:
        return cls(
            account_sid=settings["twilio.account_sid"],
            auth_token=settings["twilio.auth_token"],
            from_number=settings["twilio.from_number"],
            messaging_service_sid=settings["twilio.messaging_service_sid"],
            public_base_url=(settings["twilio.public_base_url"] or settings["app.base_url"]).rstrip("/"),
            timeout=settings["twilio.timeout"],
            api_base_url=settings["twilio.api_base_url"].rstrip("/"),
            max_segments=settings["notifications.sms.max_segments"],
        )

    def check(self) -> None:
        """SettingsError naming the setting for what cannot work."""
        if not ACCOUNT_SID.fullmatch(self.account_sid):
            raise SettingsError("setting 'twilio.account_sid' must be the account SID (AC followed by 32 hex "
                                "digits; set GG_TWILIO_ACCOUNT_SID)")
        if not self.auth_token:
            raise SettingsError("setting 'twilio.auth_token' is required to send through Twilio "
                                "(set GG_TWILIO_AUTH_TOKEN)")
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise SettingsError("set exactly one of 'twilio.from_number' and 'twilio.messaging_service_sid'")
        if self.from_number and not E164.fullmatch(self.from_number):
            raise SettingsError("setting 'twilio.from_number' must be a number in E.164 form (+14155550100)")
        if self.messaging_service_sid and not MESSAGING_SERVICE_SID.fullmatch(self.messaging_service_sid):
            raise SettingsError("setting 'twilio.messaging_service_sid' must be a Messaging Service SID "
                                "(MG followed by 32 hex digits)")

    @property
    def status_callback_url(self) -> str:
        return self.public_base_url + STATUS_PATH


class TwilioProvider:
    """Sends the ``sms`` channel through Twilio; returns the message SID."""

    name = "twilio"
    channels = ("sms",)

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._clients: dict[float, Client] = {}

    def client_for(self, timeout: float) -> Client:
        """A client waiting no longer than ``twilio.timeout`` nor the core's
        limit for this send (``timeout``, 0: none); one per limit, built at
        its first use: a worker that never sends SMS needs no session."""
        limit = min(self.config.timeout, timeout) if timeout else self.config.timeout
        if limit not in self._clients:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            client = Client(self.config.account_sid, self.config.auth_token,
                            http_client=TwilioHttpClient(timeout=limit))
            client.api.base_url = self.config.api_base_url
            self._clients[limit] = client
        return self._clients[limit]

    def send(self, message: OutgoingMessage) -> str:
        body = sms_body(message.text)
        refusal = too_many_segments(estimate_segments(body), self.config.max_segments)
        if refusal:  # queued before the cap was lowered: a backstop, as queueing refuses these
            raise PermanentDeliveryError(refusal)
        sender = ({"messaging_service_sid": self.config.messaging_service_sid}
                  if self.config.messaging_service_sid else {"from_": self.config.from_number})
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            created = self.client_for(message.timeout).messages.create(
                to=message.recipient, body=body, status_callback=self.config.status_callback_url, **sender)
        except TwilioRestException as exc:
            raise refusal_of(exc) from exc
        except (requests.RequestException, TwilioException, OSError) as exc:
            raise TransientDeliveryError(f"Twilio could not be reached: {type(exc).__name__}") from exc
        log.info("twilio provider handed notification %s to Twilio as %s (%s segment(s) reported)",
                 message.notification_id, created.sid, created.num_segments)
        return created.sid


def refusal_of(exc: TwilioRestException) -> TransientDeliveryError | PermanentDeliveryError:
    """What Twilio's refusal means for the message (see the module's text)."""
    words = f"Twilio answered {exc.status}" + (f", error {exc.code}" if exc.code else "")
    if exc.status == 429 or exc.status >= 500:
        return TransientDeliveryError(words)
    if exc.status in (401, 403) or exc.code in ACCOUNT_ERRORS:
        return TransientDeliveryError(f"{words}: check the twilio.* settings")
    meaning = REFUSALS.get(exc.code, "the message was refused")
    # Twilio remembers the opt-out and refuses every later message: so must we.
    suppress = "stop" if exc.code == UNSUBSCRIBED_RECIPIENT else None
    return PermanentDeliveryError(f"{words}: {meaning}", suppress=suppress)
