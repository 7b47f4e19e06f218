"""Error reports to Sentry (or a compatible service), off unless
``sentry.dsn`` is set.

The web process reports what its views raise (Pyramid integration), every
process the ERROR log lines (logging integration) and the worker what its
tasks raise (Huey integration); each report carries the release and the
environment. Nothing personal leaves: :func:`scrub` runs on every event
before it is sent, removes cookies, request bodies, credentials and the
caller's address, keeps only the request headers on ``KEPT_HEADERS``,
removes query values from every URL (the request's, its Referer, a
breadcrumb's) and masks tokens, emails and phone numbers wherever they
appear (URLs, messages, exception values, breadcrumbs, extra data), also
when they are percent-encoded (``jane%40example.com``).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from guestguard.audit.logging import redact

log = logging.getLogger(__name__)

REMOVED = "[removed]"
# +44 20 7946 0958, (555) 010-9999 after a +1, or a bare run of 9 to 15
# digits: phone numbers as people write them. Dates and times are not.
PHONE = re.compile(r"\+\d[\d ().+-]{5,}\d|(?<![\w.-])\d{9,15}(?![\w.-])")
# A percent-escape or a + (a space, form-encoded): text holding one is
# decoded before the masks look again.
ESCAPED = re.compile(r"%[0-9A-Fa-f]{2}|\+")
# The request headers a report keeps; every other one (cookies, credentials,
# the caller's address under any of its names: X-Forwarded-For, X-Real-IP,
# Forwarded, CF-Connecting-IP...) is dropped. Referer is kept as a URL,
# scrubbed like the request's own.
KEPT_HEADERS = frozenset({"host", "user-agent", "accept", "accept-language", "accept-encoding", "content-type",
                          "content-length"})
# Keys whose values are removed wherever they appear in the event.
SECRET_KEYS = re.compile(r"pass|secret|token|ticket|cookie|session|auth|api_?key|csrf|signature|email|phone|"
                         r"recipient|address|^ip$|remote_addr", re.IGNORECASE)
MAX_DEPTH = 20
# The event's own bookkeeping, left as it is (a release like guestguard@1.2.0
# reads as an email address to the masks).
KEPT = ("event_id", "timestamp", "level", "platform", "release", "environment", "sdk", "modules",
        "transaction", "transaction_info", "server_name", "type")


def _mask(text: str) -> str:
    return PHONE.sub("[phone]", redact(text))


def scrub_text(text: str) -> str:
    """``text`` with tokens, emails and phone numbers masked, as written or
    percent-encoded (``jane%40example.com``, ``%2B447946095812``, twice
    encoded too). Decoded text is reported only when decoding revealed
    something to mask, so ``C++`` or ``100%`` stay as they are."""
    masked = candidate = _mask(text)
    for _ in range(3):  # %2540 is %40 encoded once more
        decoded = unquote_plus(candidate) if ESCAPED.search(candidate) else candidate
        if decoded == candidate:
            break
        candidate = _mask(decoded)
        if candidate != decoded:
            masked = candidate
    return masked


def scrub_query(query: str) -> str:
    """A query string with every value removed (names kept, masked). The
    names are masked one by one: masking the whole string would read
    ``token=[removed]`` as a secret's value and mangle it."""
    return urlencode([(scrub_text(name), REMOVED) for name, _ in parse_qsl(query, keep_blank_values=True)],
                     safe="[]")


def scrub_url(url: str) -> str:
    """The URL with its query values and fragment removed and any token,
    email or phone number in its path masked; ``[removed]`` for text that
    is no URL (a forged Referer must not cost the report)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ in the host
        return REMOVED
    query = scrub_query(parts.query)  # already masked: masking it again would mangle token=[removed]
    return scrub_text(urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))) + (f"?{query}" if query else "")


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
        request["query_string"] = scrub_query(request["query_string"])
    if isinstance(request.get("headers"), Mapping):
        headers = {}
        for name, value in request["headers"].items():
            if name.lower() in KEPT_HEADERS:
                headers[name] = value
            elif name.lower() == "referer" and isinstance(value, str):
                headers[name] = scrub_url(value)
        request["headers"] = headers
    request.pop("env", None)  # REMOTE_ADDR: the caller's address
    return request


def _scrub_breadcrumb(crumb: Any) -> Any:
    """An outgoing request's breadcrumb keeps its URL and query without
    their values, and no fragment."""
    if not isinstance(crumb, Mapping) or not isinstance(crumb.get("data"), Mapping):
        return crumb
    data = dict(crumb["data"])
    if isinstance(data.get("url"), str):
        data["url"] = scrub_url(data["url"])
    if isinstance(data.get("http.query"), str):
        data["http.query"] = scrub_query(data["http.query"])
    if data.get("http.fragment"):
        data["http.fragment"] = REMOVED
    return {**crumb, "data": data}


def _scrub_breadcrumbs(breadcrumbs: Any) -> Any:
    if isinstance(breadcrumbs, Mapping) and isinstance(breadcrumbs.get("values"), list):
        return {**breadcrumbs, "values": [_scrub_breadcrumb(crumb) for crumb in breadcrumbs["values"]]}
    if isinstance(breadcrumbs, list):
        return [_scrub_breadcrumb(crumb) for crumb in breadcrumbs]
    return breadcrumbs


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: the event without credentials or personal data."""
    event = dict(event)
    if isinstance(event.get("request"), Mapping):
        event["request"] = _scrub_request(event["request"])
    if event.get("breadcrumbs"):
        event["breadcrumbs"] = _scrub_breadcrumbs(event["breadcrumbs"])
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
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
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
    # An unreachable trace collector logs an error per batch it could not
    # send: the log says so, a report per batch would drown the real ones.
    ignore_logger("opentelemetry.*")
    log.info("error reports go to Sentry (release %s, environment %s)", release_name(settings),
             settings["sentry.environment"] or settings["app.env"])
    return True
