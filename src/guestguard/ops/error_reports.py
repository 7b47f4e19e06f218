"""Error reports to Sentry (or a compatible service), off unless
``sentry.dsn`` is set.

The web process reports what its views raise (Pyramid integration), every
process the ERROR log lines (logging integration) and the worker what its
tasks raise (Huey integration); each report carries the release and the
environment. Nothing personal leaves: :func:`scrub` runs on every event
before it is sent, removes cookies, request bodies, credentials and the
caller's address, and masks tokens, emails and phone numbers wherever they
appear (URLs, messages, exception values, breadcrumbs, extra data).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from guestguard.audit.logging import redact

log = logging.getLogger(__name__)

REMOVED = "[removed]"
# +44 20 7946 0958, (555) 010-9999 after a +1, or a bare run of 9 to 15
# digits: phone numbers as people write them. Dates and times are not.
PHONE = re.compile(r"\+\d[\d ().-]{5,}\d|(?<![\w.-])\d{9,15}(?![\w.-])")
# Headers whose values are credentials or cookies: dropped, not masked.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                            "x-csrf-token", "x-amz-sns-signature", "x-twilio-signature", "stripe-signature"})
# Keys whose values are removed wherever they appear in the event.
SECRET_KEYS = re.compile(r"pass|secret|token|ticket|cookie|session|auth|api_?key|csrf|signature|email|phone|"
                         r"recipient|address|^ip$|remote_addr", re.IGNORECASE)
MAX_DEPTH = 20
# The event's own bookkeeping, left as it is (a release like guestguard@1.2.0
# reads as an email address to the masks).
KEPT = ("event_id", "timestamp", "level", "platform", "release", "environment", "sdk", "modules",
        "transaction", "transaction_info", "server_name", "type")


def scrub_text(text: str) -> str:
    return PHONE.sub("[phone]", redact(text))


def scrub_url(url: str) -> str:
    """The URL with its query values removed and any token, email or phone
    number in its path masked."""
    parts = urlsplit(url)
    query = urlencode([(name, REMOVED) for name, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="[]")
    return scrub_text(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        return REMOVED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {key: (REMOVED if isinstance(key, str) and SECRET_KEYS.search(key) and value[key] not in (None, "")
                      else _scrub(value[key], depth + 1)) for key in value}
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    request = dict(request)
    for key in ("cookies", "data"):
        if request.get(key):
            request[key] = REMOVED
    if request.get("url"):
        request["url"] = scrub_url(request["url"])
    if request.get("query_string"):
        request["query_string"] = scrub_url("?" + request["query_string"]).lstrip("?")
    if isinstance(request.get("headers"), Mapping):
        request["headers"] = {name: value for name, value in request["headers"].items()
                              if name.lower() not in SECRET_HEADERS and not name.lower().startswith("x-forwarded")}
    request.pop("env", None)  # REMOTE_ADDR: the caller's address
    return request


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: the event without credentials or personal data."""
    event = dict(event)
    if isinstance(event.get("request"), Mapping):
        event["request"] = _scrub_request(event["request"])
    user = event.get("user")
    if isinstance(user, Mapping):
        event["user"] = {"id": user["id"]} if user.get("id") else {}
    kept = {key: event.pop(key) for key in KEPT if key in event}
    return {**_scrub(event), **kept}


def release_name(settings: Mapping[str, Any]) -> str:
    if settings["sentry.release"]:
        return settings["sentry.release"]
    try:
        return f"guestguard@{metadata.version('guestguard')}"
    except metadata.PackageNotFoundError:
        return "guestguard@unknown"


def start_error_reports(settings: Mapping[str, Any]) -> bool:
    """Start reporting to ``sentry.dsn``; False (and nothing started) when
    it is empty."""
    dsn = settings["sentry.dsn"]
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.huey import HueyIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.pyramid import PyramidIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=release_name(settings),
        environment=settings["sentry.environment"] or settings["app.env"],
        sample_rate=settings["sentry.sample_rate"],
        integrations=[PyramidIntegration(transaction_style="route_name"),
                      LoggingIntegration(level=logging.INFO, event_level=logging.ERROR), HueyIntegration()],
        include_local_variables=False,  # a frame's variables hold guests, tokens, bodies
        max_request_body_size="never",
        before_send=scrub,
        traces_sample_rate=None,
    )
    log.info("error reports go to Sentry (release %s, environment %s)", release_name(settings),
             settings["sentry.environment"] or settings["app.env"])
    return True
