"""The ``ses`` provider: email through Amazon SES v2's SendEmail with the
whole MIME message (Content.Raw), so the Message-ID and the one-click
unsubscribe headers are ours.

Failures as the outbox needs them: throttling, 5xx answers, timeouts and
connection errors are TransientDeliveryError (the core retries with
backoff; botocore's own retries are off so an attempt is one call);
a rejected message, a bad address or an unverified sender are
PermanentDeliveryError. Credentials and bodies never reach a log line.

boto3 and botocore (7.5 MiB of a web process) are imported with the first
client, at the first send (the task worker's: the outbox sends), not when
the plugin loads. The settings are checked at startup all the same.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestguard.mime import compose
from guestguard.plugins import OutgoingMessage, PermanentDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

# Refusals about the account, its credentials or its pace, not this message:
# retried, so the queued messages go out once the operator fixes them.
TRANSIENT_CODES = frozenset({
    "TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException",
    "AccountSuspendedException", "SendingPausedException", "AccessDeniedException",
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredTokenException",
})


@dataclass(frozen=True)
class SESConfig:
    region: str
    configuration_set: str = ""
    endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    connect_timeout: float = 5
    read_timeout: float = 15
    unsubscribe_mailto: str = ""

    @classmethod
    def from_settings(cls, settings) -> SESConfig:
        return cls(region=settings["ses.region"], configuration_set=settings["ses.configuration_set"],
                   endpoint_url=settings["ses.endpoint_url"], access_key_id=settings["ses.access_key_id"],
                   secret_access_key=settings["ses.secret_access_key"],
                   connect_timeout=settings["ses.connect_timeout"], read_timeout=settings["ses.read_timeout"],
                   unsubscribe_mailto=settings["ses.unsubscribe_mailto"])


def make_client(config: SESConfig):
    """A sesv2 client: timeouts from settings, retries off (the outbox
    retries, with backoff, and counts attempts)."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "region_name": config.region,
        "config": Config(connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                         retries={"total_max_attempts": 1, "mode": "standard"}),
    }
    if config.endpoint_url:
        options["endpoint_url"] = config.endpoint_url
    if config.access_key_id:  # otherwise the default chain: environment, profile, instance role
        options["aws_access_key_id"] = config.access_key_id
        options["aws_secret_access_key"] = config.secret_access_key
    return boto3.session.Session().client("sesv2", **options)


class SESProvider:
    name = "ses"
    channels = ("email",)

    def __init__(self, config: SESConfig, client=None):
        self.config = config
        self._given = client
        self._clients: dict[tuple[float, float], Any] = {}

    def client_for(self, timeout: float):
        """A client whose timeouts fit both ``ses.*_timeout`` and the core's
        limit for this send (``timeout``, 0: none); one per limit, made at its
        first use: starting the app must not need AWS credentials."""
        if self._given is not None:
            return self._given
        read = min(self.config.read_timeout, timeout) if timeout else self.config.read_timeout
        limits = (min(self.config.connect_timeout, read), read)
        if limits not in self._clients:
            self._clients[limits] = make_client(dataclasses.replace(
                self.config, connect_timeout=limits[0], read_timeout=limits[1]))
        return self._clients[limits]

    def send(self, message: OutgoingMessage) -> str:
        try:
            raw = compose(message, unsubscribe_mailto=self.config.unsubscribe_mailto).as_bytes()
        except ValueError as exc:
            raise PermanentDeliveryError(f"message cannot be encoded as email: {exc}") from exc
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError as EndpointConnectionError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        request: dict[str, Any] = {"Content": {"Raw": {"Data": raw}}}
        if self.config.configuration_set:
            request["ConfigurationSetName"] = self.config.configuration_set
        try:
            answer = self.client_for(message.timeout).send_email(**request)
        except ClientError as exc:
            raise classify(exc) from exc
        except (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError) as exc:
            raise TransientDeliveryError(f"Amazon SES did not answer in time: {type(exc).__name__}") from exc
        except BotoCoreError as exc:  # no credentials, a bad endpoint...: settings, fixable, so retried
            raise TransientDeliveryError(f"cannot call Amazon SES: {exc}") from exc
        message_id = answer["MessageId"]
        log.info("ses provider handed notification %s to Amazon SES as %s", message.notification_id, message_id)
        return message_id


def classify(exc: ClientError) -> PermanentDeliveryError | TransientDeliveryError:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    detail = f"Amazon SES refused the message: {code} {error.get('Message', '')}".strip()
    if code in TRANSIENT_CODES or status == 429 or status >= 500 or status < 400:
        return TransientDeliveryError(detail)
    # MessageRejected, an invalid address, an unverified sender: the same
    # message would be refused again.
    return PermanentDeliveryError(detail)
