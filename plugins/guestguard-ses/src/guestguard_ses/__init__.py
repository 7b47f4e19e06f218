"""GuestGuard plugin: email through Amazon SES, and SES's delivery events
(bounces, complaints, deliveries) through an SNS subscription to
``POST /webhooks/ses``.

The provider sends through SES v2 with the whole MIME message; the webhook
verifies SNS's signature as Amazon signs it (``sns``), stores the message in
the core's webhook inbox, and the worker applies it (``events``).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from guestguard.plugins import Setting, SettingsError, as_bool, as_int, as_list, as_str, as_url, hookimpl
from guestguard.validation import normalize_email
from guestguard_ses import http, sns
from guestguard_ses.events import SESEvents
from guestguard_ses.provider import SESConfig, SESProvider

__all__ = ["SESConfig", "SESEvents", "SESProvider"]

log = logging.getLogger(__name__)

# Signing certificates kept in memory; Amazon uses one or two at a time.
CERTIFICATE_CACHE_SIZE = 16


def _pattern(value: str) -> str:
    pattern = value.strip()
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return pattern


def _mailbox(value: str) -> str:
    return normalize_email(value.strip()) if value.strip() else ""


def _versions(value: str) -> tuple[str, ...]:
    versions = as_list(value)
    if not versions or set(versions) - set(sns.HASHES):
        raise ValueError(f"expected one or both of {', '.join(sns.HASHES)}, got {value!r}")
    return versions


@hookimpl
def register_settings() -> list[Setting]:
    return [
        Setting("ses.region", as_str, "us-east-1", "AWS region of the SES account (eu-west-1, ...)."),
        Setting("ses.configuration_set", as_str, "",
                "SES configuration set named on every message (its event destination publishes to SNS); "
                "empty names none."),
        Setting("ses.endpoint_url", as_url("http", "https", allow_empty=True), "",
                "Another SES endpoint (a VPC endpoint, or a local stub in tests); empty means AWS's own."),
        Setting("ses.access_key_id", as_str, "",
                "AWS access key id; empty uses the default credential chain (environment, profile, role)."),
        Setting("ses.secret_access_key", str, "", "The secret of ses.access_key_id.", secret=True),
        Setting("ses.connect_timeout", as_int(1, 60), 5, "Seconds to connect to SES."),
        Setting("ses.read_timeout", as_int(1, 120), 15, "Seconds to wait for SES's answer to a send."),
        Setting("ses.unsubscribe_mailto", _mailbox, "",
                "A mailbox someone reads, offered as the mailto alternative in List-Unsubscribe on guest "
                "messages; empty offers the https link only."),
        Setting("ses.sns_topic_arns", as_list, (),
                "ARNs of the SNS topics whose messages /webhooks/ses accepts; empty accepts none."),
        Setting("ses.sns_signature_versions", _versions, ("1", "2"),
                "SNS SignatureVersions accepted: 1 (SHA1withRSA), 2 (SHA256withRSA), or both."),
        Setting("ses.sns_certificate_hosts", _pattern, sns.AMAZON_HOSTS,
                "Regular expression the host of an SNS signing certificate (and subscription link) must "
                "match. Change it only for tests."),
        Setting("ses.sns_allow_http", as_bool, False,
                "Tests only: accept http certificate and subscription URLs. Refused unless "
                "ses.sns_certificate_hosts is changed, and in production."),
        Setting("ses.sns_timeout", as_int(1, 30), 5,
                "Seconds to fetch a signing certificate or confirm a subscription."),
        Setting("ses.soft_bounce_window_hours", as_int(1, 720), 72,
                "Hours over which soft bounces to one address are counted."),
        Setting("ses.soft_bounce_limit", as_int(1, 100), 3,
                "Soft-bounced messages to one address within the window that make the last one failed."),
    ]


def sns_policy(settings: Mapping[str, Any]) -> sns.Policy:
    allow_http = settings["ses.sns_allow_http"]
    if allow_http and settings["ses.sns_certificate_hosts"] == sns.AMAZON_HOSTS:
        raise SettingsError("setting 'ses.sns_allow_http' is for tests against a local host: it needs "
                            "'ses.sns_certificate_hosts' changed, and Amazon's hosts are https only")
    if allow_http and settings["app.env"] == "production":
        raise SettingsError("setting 'ses.sns_allow_http' must be false in production")
    return sns.Policy(versions=settings["ses.sns_signature_versions"], topics=settings["ses.sns_topic_arns"],
                      hosts=settings["ses.sns_certificate_hosts"], allow_http=allow_http)


def _fetch_certificate(timeout: float, url: str) -> bytes:
    try:
        return http.get(url, timeout)
    except http.FetchFailed as exc:
        raise sns.CertificateUnavailable(f"{url} {exc}") from None


def _confirm_subscription(timeout: float, url: str) -> None:
    http.get(url, timeout)  # FetchFailed: retried by the inbox


@hookimpl
def register_notification_providers(settings: Mapping[str, Any]) -> list[SESProvider]:
    return [SESProvider(SESConfig.from_settings(settings))]


@hookimpl
def register_webhook_handlers(settings: Mapping[str, Any]) -> list[SESEvents]:
    return [SESEvents(sns_policy(settings), partial(_confirm_subscription, settings["ses.sns_timeout"]),
                      soft_bounce_window=dt.timedelta(hours=settings["ses.soft_bounce_window_hours"]),
                      soft_bounce_limit=settings["ses.soft_bounce_limit"])]


@hookimpl
def configure(config) -> None:
    from guestguard.contract import Refused
    from guestguard_ses.views import Stored, ses_events

    settings = config.get_settings()
    if settings.get("notifications.email.provider") == "ses" and not settings["ses.sns_topic_arns"]:
        log.warning("email goes through Amazon SES but ses.sns_topic_arns is empty: /webhooks/ses refuses "
                    "every SNS message, so bounces and complaints are not heard")
    config.registry["ses.sns_policy"] = sns_policy(settings)
    config.registry["ses.certificates"] = sns.CertificateCache(
        partial(_fetch_certificate, settings["ses.sns_timeout"]), CERTIFICATE_CACHE_SIZE)
    config.add_route("ses_webhook", "/webhooks/ses")
    config.add_view(ses_events, route_name="ses_webhook", request_method="POST", renderer="json",
                    require_csrf=False,
                    response={200: Stored, 400: Refused("invalid_notification"), 403: Refused("forged_notification"),
                              413: Refused("too_large"), 503: Refused("certificate_unavailable")})
