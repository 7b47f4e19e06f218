"""The one settings reader: ini values, ``GG_*`` environment overrides, typed
and validated at startup.

Every setting GuestGuard (or a plugin, through ``register_settings``) reads is
declared as a :class:`Setting`. A declared setting can be overridden by the
environment variable ``GG_`` + its name upper-cased, every other character
than a letter or digit as an underscore (``db.pool_size`` -> ``GG_DB_POOL_SIZE``). Keys the ini file passes to other
libraries (``pyramid.*``, ``retry.*``, ``jinja2.*``...) are left as they are.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ENV_PREFIX = "GG_"
# The test suite's and the benchmarks' own variables, never settings.
OWN_ENV_PREFIXES = ("GG_TEST_", "GG_BENCH_")
ENVIRONMENTS = ("development", "production", "test")


class SettingsError(Exception):
    """A setting is missing, malformed or unknown; the message names it."""


class _Required:
    def __repr__(self) -> str:
        return "(required)"


REQUIRED = _Required()


@dataclass(frozen=True)
class Setting:
    """One declared setting.

    ``parse`` turns the raw string into a typed value and raises ``ValueError``
    with a human reason when it cannot. ``required_in`` lists the environments
    (``app.env`` values) in which a value must be given; elsewhere ``default``
    applies. ``secret`` values are never logged or listed.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any = REQUIRED
    doc: str = ""
    secret: bool = False
    required_in: tuple[str, ...] = ()

    @property
    def env_var(self) -> str:
        return env_var_for(self.name)


def env_var_for(name: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


# --- parsers -----------------------------------------------------------------


def as_str(value: str) -> str:
    return value.strip()


def as_page(value: str) -> str:
    """A page the operator supplies: empty (the built-in one), an http(s)
    URL (visitors are sent there), or the path of an HTML file (shown inside
    the site's layout), which must exist."""
    value = value.strip()
    if not value or value.startswith(("https://", "http://")):
        return value
    if not Path(value).is_file():
        raise ValueError(f"{value!r} is neither an http(s) URL nor an existing HTML file")
    return value


def as_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def as_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}, got {number}")
        return number

    return parse


def as_float(minimum: float | None = None) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def as_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        chosen = value.strip()
        if chosen not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return chosen

    return parse


def as_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"expected a date like 2026-01-31, got {value!r}") from None


def as_networks(value: str) -> tuple:
    """IP addresses or CIDR networks."""
    import ipaddress

    networks = []
    for item in as_list(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def as_listen(value: str) -> tuple[str, int] | None:
    """``host:port`` to listen on (``[::1]:9465`` for IPv6), or empty for none."""
    text = value.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port like 127.0.0.1:9465, got {value!r}")
    return host, int(port)


def as_token(minimum: int) -> Callable[[str], str]:
    """A shared secret of at least ``minimum`` characters, or empty for none."""

    def parse(value: str) -> str:
        token = value.strip()
        if token and (len(token) < minimum or any(c.isspace() or not c.isprintable() for c in token)):
            raise ValueError(f"must be at least {minimum} printable characters without spaces")
        return token

    return parse


def as_int_or_never(minimum: int) -> Callable[[str], int | None]:
    """A whole number of at least ``minimum``, or ``never`` for none."""
    whole = as_int(minimum)

    def parse(value: str) -> int | None:
        if value.strip().lower() == "never":
            return None
        return whole(value)

    return parse


def as_fraction(value: str) -> float:
    number = as_float(0.0)(value)
    if number > 1:
        raise ValueError(f"must be between 0 and 1, got {number}")
    return number


def as_rate_limit(value: str) -> str:
    """A limit like ``5/hour`` or ``10/5 minutes``: at least 1, at most a
    million, over a window of at most a year."""
    from limits import parse

    text = value.strip()
    try:
        item = parse(text)
    except ValueError:
        raise ValueError(f"expected a limit like 5/hour or 10/5 minutes, got {value!r}") from None
    if not 1 <= item.amount <= 1_000_000:
        raise ValueError(f"the amount must be 1 to 1,000,000, got {item.amount}")
    if not 1 <= item.get_expiry() <= 366 * 86400:
        raise ValueError("the window must be between a second and a year")
    return text


def as_clock(value: str) -> dt.time:
    """A time of day written HH:MM (24-hour)."""
    hours, sep, minutes = value.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(hours) <= 2 and len(minutes) == 2
            and int(hours) <= 23 and int(minutes) <= 59):
        raise ValueError(f"{value!r} is not a time of day written HH:MM (like 08:00 or 21:30)")
    return dt.time(int(hours), int(minutes))


def as_list(value: str) -> tuple[str, ...]:
    return tuple(item for item in re.split(r"[\s,]+", value.strip()) if item)


def as_url(*schemes: str, allow_empty: bool = False) -> Callable[[str], str]:
    """A URL whose scheme (before any ``+driver``) is one of ``schemes``, with
    a host (or, for SQLite, a file path) and a numeric port if any."""

    def parse(value: str) -> str:
        url = value.strip()
        if not url and allow_empty:
            return ""
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]
        if not parts.scheme or scheme not in schemes:
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        if scheme == "sqlite":
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
            if not path or path.startswith((":memory:", "?")):
                raise ValueError("a SQLite URL names a file: sqlite:///path/to/file.sqlite")
            return url
        if scheme in ("memory", "unix"):
            return url
        try:
            _ = parts.port  # reading it checks it
        except ValueError:
            raise ValueError("the URL has an invalid port") from None
        # PostgreSQL may name a socket directory in the query instead of a host.
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("the URL names no host")
        return url

    return parse


# A header name (RFC 9110 token) and a value without control characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def as_headers(value: str) -> tuple[tuple[str, str], ...]:
    """HTTP headers written ``name=value,name2=value2`` (the form of
    ``OTEL_EXPORTER_OTLP_HEADERS``; a value may be percent-encoded, so a comma
    or an equals sign can be part of it), or empty for none."""
    from urllib.parse import unquote

    headers = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, text = item.partition("=")
        name, text = name.strip(), unquote(text.strip())
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise ValueError("expected headers written name=value,name2=value2")
        if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError(f"the value of header {name!r} is empty or holds a control character")
        headers.append((name, text))
    return tuple(headers)


def as_database_url(value: str) -> str:
    url = as_url("sqlite", "postgresql")(value)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ValueError(f"SQLAlchemy cannot use this URL ({exc})") from None
    return url


def as_optional_database_url(value: str) -> str:
    """A database URL, or empty for none."""
    return as_database_url(value) if value.strip() else ""


def as_email_sender(value: str) -> str:
    """``Name <address@domain>`` or a bare address, nothing that could break
    an email header."""
    from email.utils import parseaddr

    sender = value.strip()
    if any(c in sender for c in "\r\n\0"):
        raise ValueError("must be on one line")
    _name, address = parseaddr(sender)
    local, _, domain = address.rpartition("@")
    if not local or ("." not in domain and domain != "localhost"):
        raise ValueError(f"expected an address like GuestGuard <no-reply@example.com>, got {value!r}")
    return sender


# --- the core's settings -----------------------------------------------------

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("app.env", as_choice(*ENVIRONMENTS), "development",
            "Which environment this is: development, production or test. "
            "Production requires its secrets and turns on HSTS and secure cookies."),
    Setting("app.secret", as_str, "development-only-secret-change-me",
            "Key material for signed cookies and sealed notification data. "
            "At least 32 random characters in production.", secret=True,
            required_in=("production",)),
    Setting("app.base_url", as_url("http", "https"), "http://localhost:6543",
            "The public address of the app, used in links inside emails and SMS.",
            required_in=("production",)),
    Setting("app.templates_dir", as_str, "",
            "Where the Jinja2 templates live; empty means the templates/ folder of the source tree."),
    Setting("db.url", as_database_url, REQUIRED,
            "SQLAlchemy database URL: sqlite:///path or postgresql+psycopg://user@host/db."),
    Setting("db.replica_url", as_optional_database_url, "",
            "A read-only replica of db.url that the guest-list exports read (they may lag it by the "
            "replication delay); empty: they read db.url."),
    Setting("db.migrate_url", as_optional_database_url, "",
            "URL migrations connect with, as the tables' owner (guestguard migrate); empty: db.url. Set it when "
            "db.url names the application's role, which owns nothing (PostgreSQL row-level security, "
            "docs/operations.md)."),
    Setting("db.pool_size", as_int(1, 1000), 5, "Connections kept open per process (PostgreSQL)."),
    Setting("db.max_overflow", as_int(0, 1000), 10, "Extra connections allowed above the pool size."),
    Setting("db.pool_timeout", as_int(1, 600), 30, "Seconds to wait for a free connection."),
    Setting("db.pool_recycle", as_int(-1), 1800, "Seconds after which a pooled connection is replaced."),
    Setting("db.ping_idle_seconds", as_int(-1, 86400), 10,
            "A pooled connection idle this long is checked before use; -1 never (PostgreSQL)."),
    Setting("db.prepare_threshold", as_int_or_never(0), 5,
            "Executions of one query on a connection after which psycopg prepares it on the server; "
            "never prepares nothing: required behind PgBouncer in transaction pooling "
            "mode, which hands each transaction any server connection (PostgreSQL only)."),
    Setting("db.echo", as_bool, False, "Log every SQL statement (development only)."),
    Setting("db.outage_retry_after", as_int(1, 3600), 5,
            "Seconds a client is told to wait (Retry-After) when the database cannot be reached."),
    Setting("db.outage_log_seconds", as_int(1, 86400), 30,
            "A database outage is logged once per this many seconds; every failure is counted."),
    Setting("redis.url", as_url("redis", "rediss", "unix", allow_empty=True), "",
            "Redis used by the app (readiness checks it when set)."),
    Setting("huey.url", as_url("redis", "rediss", "unix", "sqlite", "memory"), REQUIRED,
            "Task queue storage: redis://host:port/db, sqlite:///path or memory://."),
    Setting("huey.name", as_str, "guestguard", "Queue name; workers and web processes must agree."),
    Setting("huey.immediate", as_bool, False,
            "Run tasks synchronously when enqueued (unit tests only)."),
    Setting("huey.in_process_worker", as_bool, False,
            "Start a consumer thread inside the web process (development: one process)."),
    Setting("huey.workers", as_int(1, 64), 2, "Worker threads of a consumer."),
    Setting("jobs.lost_after", as_int(1), 120,
            "Seconds a due job may wait before the reaper assumes its task was lost and enqueues it again."),
    Setting("jobs.lease_seconds", as_int(1, 3600), 30,
            "Seconds a running job's lease lasts; its worker renews it every third of that while it "
            "works, and the reaper retries a job whose lease lapsed (its worker died)."),
    Setting("jobs.reap_interval", as_int(1, 300), 10,
            "Seconds between two runs of the reaper in each worker process."),
    Setting("jobs.reaper_batch", as_int(1, 100000), 500,
            "Jobs of a kind the reaper takes back per transaction; it goes on until none is left."),
    Setting("jobs.shutdown_grace_seconds", as_int(0, 3600), 20,
            "Seconds a stopping worker (SIGTERM or SIGINT) lets its running tasks finish; the jobs "
            "still running then are released for another worker at once. Keep it below the stop "
            "timeout of the service manager (systemd's TimeoutStopSec)."),
    Setting("domain_events.retention_days", as_int(1, 3650), 30,
            "Days a delivered domain event is kept (plugins deduplicate by its id); dead and pending "
            "ones stay until replayed."),
    Setting("plugins.strict", as_bool, False,
            "Stop startup when a plugin distribution fails to load (otherwise log and skip it)."),
    Setting("plugins.disabled", as_list, (), "Names of plugins not to register."),
    Setting("notifications.email.provider", as_str, "console", "Provider that sends email."),
    Setting("notifications.sms.provider", as_str, "",
            "Provider that sends SMS; empty (the default) means SMS cannot be sent, and sending one is "
            "refused with a clear error. development.ini names the console provider."),
    Setting("notifications.sms.max_segments", as_int(1, 10), 4,
            "Most SMS segments one text may take (160 GSM-7 characters in one, 153 each when split; 70 and 67 "
            "for a text with any other character); a longer text is refused before it is queued."),
    Setting("notifications.push.provider", as_str, "",
            "Provider that sends push notifications; empty means push cannot be sent."),
    Setting("notifications.email.fallback", as_str, "",
            "Provider that sends email when the provider's circuit breaker is open or a send fails "
            "transiently (SMTP behind SES, say); empty means none."),
    Setting("notifications.sms.fallback", as_str, "",
            "Provider that sends SMS when the provider's circuit breaker is open or a send fails "
            "transiently; empty means none."),
    Setting("notifications.push.fallback", as_str, "",
            "Provider that sends push notifications when the provider's circuit breaker is open or a "
            "send fails transiently; empty means none."),
    Setting("notifications.send_timeout_seconds", as_float(0.5), 20.0,
            "Seconds a provider may take to send one message (handed to the provider for its network "
            "calls); the worker stops waiting a second later and treats the outcome as unknown."),
    Setting("notifications.batch_size", as_int(1, 500), 25,
            "Messages of a bulk send (send-all, reminders) one delivery task sends one after another; "
            "1 gives every message a task of its own."),
    Setting("notifications.batch_patience_seconds", as_float(0.1), 2.0,
            "Seconds a delivery task waits on one send before giving the rest of its batch back to "
            "the queue, so a provider that hangs holds one message, not a batch."),
    Setting("notifications.breaker.url", as_url("redis", "rediss", "unix", "memory"), "memory://",
            "Where the providers' circuit breakers keep their state: redis://host:port/db shared by "
            "every worker in production, memory:// for one process."),
    Setting("notifications.breaker.failures", as_int(1, 1000), 5,
            "Transient failures in a row after which a provider's circuit breaker opens and its "
            "messages are held."),
    Setting("notifications.breaker.cooldown_seconds", as_int(1, 86400), 60,
            "Seconds an open circuit breaker holds a provider's messages before one is let through "
            "to probe it."),
    Setting("notifications.quiet_hours.enabled", as_bool, True,
            "Hold guest messages on channels with quiet hours (SMS) outside the allowed hours of the "
            "recipient's local time."),
    Setting("notifications.quiet_hours.allowed_from", as_clock, dt.time(8, 0),
            "Local time (HH:MM) from which guest text messages may be sent."),
    Setting("notifications.quiet_hours.allowed_until", as_clock, dt.time(21, 0),
            "Local time (HH:MM) until which guest text messages may be sent; later ones wait for the "
            "next day's allowed_from."),
    Setting("notifications.email.sender", as_email_sender, "GuestGuard <no-reply@localhost>",
            "The From address of outgoing email."),
    Setting("notifications.console.keep", as_int(1, 10000), 200,
            "How many messages the console provider keeps for /dev/outbox."),
    Setting("passwords.time_cost", as_int(2, 20), 3, "argon2id iterations (at least 2)."),
    Setting("passwords.memory_kib", as_int(19456, 4 * 1024 * 1024), 65536,
            "argon2id memory in KiB (at least 19456, the OWASP floor)."),
    Setting("passwords.parallelism", as_int(1, 16), 4, "argon2id lanes."),
    Setting("auth.access_token_ttl", as_int(60, 3600), 900, "Seconds an API access token lives."),
    Setting("auth.session_ttl_days", as_int(1, 365), 30,
            "Days after which a login session ends, whatever its use."),
    Setting("auth.jwt_audience", as_str, "guestguard-api", "The aud claim of access tokens."),
    Setting("auth.verify_email_ttl_hours", as_int(1, 168), 24, "Hours an email verification link works."),
    Setting("auth.reset_password_ttl_minutes", as_int(5, 1440), 60, "Minutes a password reset link works."),
    Setting("policies.updated_at", as_date, dt.date(2026, 11, 1),
            "Date of the current privacy policy and terms; users who accepted earlier versions "
            "are asked to accept again."),
    Setting("policies.privacy_page", as_page, "",
            "The privacy policy: empty for the built-in placeholder, an https:// URL to send visitors to, "
            "or the path of an HTML file shown inside the site's layout."),
    Setting("policies.terms_page", as_page, "",
            "The terms of service, as policies.privacy_page."),
    Setting("http.max_body_bytes", as_int(1024, 1024 * 1024 * 1024), 2 * 1024 * 1024,
            "Largest request body of any kind; larger gets 413 before anything reads it."),
    Setting("api.max_body_bytes", as_int(1024, 100 * 1024 * 1024), 65536,
            "Largest JSON body the API accepts; larger gets 413."),
    Setting("webhooks.max_payload_bytes", as_int(1024, 10 * 1024 * 1024), 262144,
            "Largest webhook body the inbox stores; a provider's view refuses a larger one (413)."),
    Setting("webhooks.retention_days", as_int(1, 3650), 30,
            "Days a processed webhook is kept (its body names people); failed ones stay."),
    Setting("idempotency.ttl_hours", as_int(1, 720), 24,
            "Hours the first answer to an Idempotency-Key is kept and replayed to repeats."),
    Setting("idempotency.wait_seconds", as_int(1, 300), 10,
            "Seconds a repeat waits for a request with its Idempotency-Key still running (PostgreSQL) "
            "before it is told 409 idempotency_key_in_use."),
    Setting("cors.allowed_origins", as_list, (),
            "Origins (scheme://host[:port]) whose pages may call the API from a browser, "
            "credentials included; empty allows none."),
    Setting("cors.max_age", as_int(0, 86400), 600, "Seconds a browser may cache a preflight answer."),
    Setting("workspaces.invitation_ttl_days", as_int(1, 90), 7, "Days a workspace invitation link works."),
    Setting("app.trusted_proxies", as_networks, (),
            "Addresses or networks (CIDR) of the reverse proxies in front of the app; only "
            "their X-Forwarded-For is believed when working out a client's address."),
    Setting("ratelimit.enabled", as_bool, True, "Enforce the rate limits."),
    Setting("ratelimit.url", as_url("redis", "rediss", "memory"), "memory://",
            "Where the limiter counts: redis://host:port/db in production (shared by every "
            "process), memory:// for one process."),
    Setting("ratelimit.signup", as_rate_limit, "5/hour", "Signups per client IP."),
    Setting("ratelimit.login", as_rate_limit, "10/5 minutes", "Login attempts per client IP and email."),
    Setting("ratelimit.login_ip", as_rate_limit, "30/5 minutes",
            "Login attempts per client IP, whatever the email (credential stuffing)."),
    Setting("ratelimit.password_change", as_rate_limit, "10/hour",
            "Password changes (current password checks) per signed-in user."),
    Setting("ratelimit.workspace_create", as_rate_limit, "20/day", "Workspaces created per user."),
    Setting("ratelimit.workspace_invite", as_rate_limit, "100/day",
            "Workspace invitations sent per user (each is an email)."),
    Setting("ratelimit.forgot_password", as_rate_limit, "3/hour",
            "Password reset requests per client IP and email."),
    Setting("ratelimit.resend_verification", as_rate_limit, "3/hour",
            "Verification email requests per client IP and email."),
    Setting("ratelimit.account_mail", as_rate_limit, "5/hour",
            "Verification and password-reset emails one account is sent, however many addresses ask "
            "(past it, asking answers as usual and sends nothing)."),
    Setting("ratelimit.rsvp", as_rate_limit, "10/hour", "RSVP submissions per invitation link."),
    Setting("ratelimit.invitation_page", as_rate_limit, "60/hour", "Invitation page views per link."),
    Setting("ratelimit.invalid_link", as_rate_limit, "30/hour",
            "Unusable invitation links (unknown, revoked, expired) presented per client IP; "
            "over it the answer is 429 and nothing more is logged."),
    Setting("ratelimit.stream_ticket", as_rate_limit, "120/hour",
            "Live-stream tickets issued per signed-in user or API key."),
    Setting("ratelimit.event_create", as_rate_limit, "20/day", "Events created per user."),
    Setting("ratelimit.guest_create", as_rate_limit, "1000/day", "Guests created per user."),
    Setting("ratelimit.guest_import", as_rate_limit, "60/hour",
            "Guest-list files previewed or imported per user or API key."),
    Setting("ratelimit.link_issue", as_rate_limit, "500/day", "Invitation links issued per user."),
    Setting("ratelimit.test_send", as_rate_limit, "30/day",
            "Test invitations a host sends to their own address (the send page's \"Send a test to me\")."),
    Setting("ratelimit.api", as_rate_limit, "600/minute",
            "Ceiling on all /api/ requests per API key, or per client IP without one."),
    Setting("auth.lockout_threshold", as_int(1, 100), 5,
            "Consecutive failed logins that lock an account until its password is reset."),
    Setting("captcha.verifier", as_str, "disabled",
            "CAPTCHA on signup and forgot-password: disabled, test, or a plugin's verifier "
            "(hcaptcha, turnstile)."),
    Setting("captcha.on_unavailable", as_choice("refuse", "allow"), "refuse",
            "When the CAPTCHA service cannot be reached: refuse (503 captcha_unavailable) or "
            "allow the request."),
    Setting("guests.default_region", as_str, "US",
            "Country (ISO 3166 code) for guest phone numbers written without +country code when the event's "
            "time zone is in no country (UTC); otherwise the zone's country applies."),
    Setting("guests.max_batch", as_int(1, 10000), 1000, "Most guests one API call may add."),
    Setting("guests.undo_seconds", as_int(3, 300), 10,
            "Seconds a removed guest can be put back; the worker then purges them with everything held "
            "about them."),
    Setting("reminders.max_per_event", as_int(1, 20), 5,
            "Most reminders one event may have (offsets before its start)."),
    Setting("reminders.max_days_before", as_int(1, 365), 60,
            "Furthest before the start (in days; in hours, 24 times it) a reminder may go, and before "
            "the RSVP deadline a \"please answer\" nudge may go."),
    Setting("reminders.late_window_minutes", as_int(1, 10080), 360,
            "Minutes after its time a reminder or nudge may still go out (a worker was down); later it is "
            "marked missed, not sent."),
    Setting("reminders.batch_size", as_int(1, 10000), 500,
            "Scheduled messages one worker claims, checks and queues per transaction."),
    Setting("checkin.undo_minutes", as_int(0, 1440), 5,
            "Minutes during which the door can undo a check-in; 0: never."),
    Setting("checkin.search_results", as_int(1, 200), 20,
            "Most guests a name search at the door shows."),
    Setting("imports.max_file_bytes", as_int(1024, 50 * 1024 * 1024), 1024 * 1024,
            "Largest guest-list file accepted for import, in bytes (413 above it)."),
    Setting("imports.max_rows", as_int(1, 100000), 5000, "Most data rows one imported file may hold."),
    Setting("imports.max_columns", as_int(1, 1000), 50, "Most columns one imported file may hold."),
    Setting("imports.max_cell_chars", as_int(10, 100000), 1000,
            "Most characters one cell of an imported file may hold; a longer one is that row's error."),
    Setting("imports.max_unpacked_bytes", as_int(1024 * 1024, 1024 * 1024 * 1024), 50 * 1024 * 1024,
            "What a compressed file (an .xlsx workbook) may unpack to before it is refused as a zip bomb."),
    Setting("imports.keep_hours", as_int(1, 24 * 30), 24,
            "Hours an uploaded file is kept (to import its preview, to download its error rows); "
            "previews never imported are deleted after it, imports keep their counts."),
    Setting("privacy.export_dir", as_str, "var/exports",
            "Directory where data exports wait for their one download (the worker writes, the web serves: "
            "shared by both); files are deleted after the download or the link's expiry."),
    Setting("privacy.retention_months", as_int(1, 120), 18,
            "Months after an event ends before its guests are anonymized by the nightly job "
            "(a workspace may set its own)."),
    Setting("privacy.retention_notice_days", as_int(1, 60), 14,
            "Days before an event is anonymized that its workspace's owners are told."),
    Setting("privacy.deletion_grace_days", as_int(1, 90), 30,
            "Days a deleted account can still be brought back by the emailed link before it is erased for good."),
    Setting("privacy.export_link_days", as_int(1, 30), 7,
            "Days the emailed link to a data export works (once, signed in as its owner)."),
    Setting("covers.max_bytes", as_int(64 * 1024, 50 * 1024 * 1024), 5 * 1024 * 1024,
            "Largest cover image a host may upload for an event; larger is refused (413 past it)."),
    Setting("covers.max_width", as_int(320, 4000), 1600,
            "Width in pixels covers are scaled down to when re-encoded."),
    Setting("guard.enabled", as_bool, True,
            "Log every use of an invitation link and run the access rules on it; false keeps no "
            "access log (no addresses stored) and flags nothing."),
    Setting("guard.retention_days", as_int(1, 3650), 90,
            "Days the access log keeps a use (its address and browser); older rows are purged "
            "nightly, their counts kept per guest and day."),
    Setting("guard.rules_disabled", as_list, (),
            "Names of access rules not to run (built-in: networks, devices, revoked_link, "
            "rsvp_device, burst, link_preview, programs, public_link, first_open_elsewhere; plugins add more)."),
    Setting("guard.published_ranges", as_str, "",
            "JSON file of the address ranges mail scanners, clouds, corporate proxies and privacy relays "
            "publish (written by guestguard guard update-ranges); empty: the set shipped with GuestGuard."),
    Setting("guard.network_databases", as_list, (),
            "MaxMind-format databases (GeoLite2/GeoIP2 ASN, Country or City, Connection-Type) telling "
            "a use's operator, connection type and country, comma-separated paths; empty: networks are "
            "address prefixes (/24, /48) and the published ranges."),
    Setting("guard.networks.threshold", as_int(1, 1000), 3,
            "Flag a link used by people on more than this many networks (a carrier's or a company "
            "proxy's pool is one network; without a network database, an IPv4 /24 or IPv6 /48) ..."),
    Setting("guard.networks.window_hours", as_int(1, 720), 24, "... within this many hours."),
    Setting("guard.networks.one_device_minutes", as_int(1, 1440), 30,
            "... or, when one device alone was used, within this many minutes (a phone moving between "
            "networks over the day is its owner moving)."),
    Setting("guard.devices.threshold", as_int(1, 1000), 2,
            "Flag a link opened by more than this many parties (a person's devices, and a household's "
            "on one home network, are one party) ..."),
    Setting("guard.devices.window_hours", as_int(1, 720), 24, "... within this many hours."),
    Setting("guard.burst.opens", as_int(2, 10000), 10,
            "Flag a link opened more than this many times by more than one party ..."),
    Setting("guard.burst.window_minutes", as_int(1, 1440), 5, "... within this many minutes."),
    Setting("guard.rsvp_device.same_network_ok", as_bool, True,
            "An answer bringing plus-ones from another party than the first open is flagged; true "
            "counts an answer from the first open's home network as the same party."),
    Setting("guard.previews.new_parties", as_int(1, 1000), 2,
            "A preview in a private chat (WhatsApp, Messages) is flagged once more than this many new "
            "parties open the link after it within the devices window."),
    Setting("guard.programs.threshold", as_int(1, 10000), 5,
            "Flag a link fetched more than this many times by programs that are neither a mail "
            "scanner nor a chat preview nor a search engine ..."),
    Setting("guard.programs.window_minutes", as_int(1, 1440), 60, "... within this many minutes."),
    Setting("guard.stream.url", as_url("redis", "rediss", "unix", "memory"), "memory://",
            "Where live activity is published for the hosts' streams: redis://host:port/db when "
            "web processes and workers are separate, memory:// for one process."),
    Setting("guard.stream.max_streams", as_int(0, 100000), 4,
            "Live streams one web process serves at once; more get 503 and the page polls. Under "
            "threaded servers each stream holds a thread: keep this below the threads per process."),
    Setting("guard.stream.max_per_holder", as_int(1, 1000), 2,
            "Live streams one person or API key may hold open in one web process."),
    Setting("guard.stream.heartbeat_seconds", as_int(1, 300), 15,
            "Seconds between heartbeats on an idle live stream (keeps proxies from closing it)."),
    Setting("guard.stream.max_seconds", as_int(10, 86400), 300,
            "Seconds after which a live stream ends; the page reconnects with a new ticket."),
    Setting("guard.stream.recheck_seconds", as_int(1, 300), 5,
            "Seconds between checks of a live stream holder's access: signing out, being removed or a "
            "revoked key ends the stream within this time."),
    Setting("metrics.token", as_token(24), "",
            "Bearer token a Prometheus scrape of /metrics must send (at least 24 characters); empty: "
            "no token is asked for. With neither this nor metrics.allowed_networks, /metrics answers 404.",
            secret=True),
    Setting("metrics.allowed_networks", as_networks, (),
            "Addresses or networks (CIDR) allowed to scrape /metrics (as the client address is worked "
            "out with app.trusted_proxies); empty: any address, if the token is right. With both set, "
            "a scrape needs both. Without the token it must not overlap app.trusted_proxies."),
    Setting("metrics.worker_listen", as_listen, None,
            "host:port on which `guestguard worker` serves its own /metrics (the same token and "
            "networks apply); empty: the worker serves none."),
    Setting("sentry.dsn", as_url("http", "https", allow_empty=True), "",
            "Sentry (or compatible) DSN errors are reported to; empty: no error is reported.", secret=True),
    Setting("sentry.environment", as_str, "",
            "The environment tag of error reports; empty: app.env."),
    Setting("sentry.release", as_str, "",
            "The release tag of error reports; empty: guestguard@ and the installed version."),
    Setting("sentry.sample_rate", as_fraction, 1.0,
            "Share of errors reported (0 to 1)."),
    Setting("tracing.enabled", as_bool, False,
            "Send OpenTelemetry traces of requests, tasks, SQL, Redis and outgoing HTTP to "
            "tracing.endpoint; false: OpenTelemetry is not even imported."),
    Setting("tracing.endpoint", as_url("http", "https"), "http://127.0.0.1:4318/v1/traces",
            "The OTLP/HTTP URL traces are sent to (a collector's /v1/traces)."),
    Setting("tracing.protocol", as_choice("http/protobuf"), "http/protobuf",
            "The OTLP transport; http/protobuf is the one supported."),
    Setting("tracing.service_name", as_str, "guestguard",
            "service.name of every span; the worker's and the web's spans share it."),
    Setting("tracing.sample_ratio", as_fraction, 1.0,
            "Share of traces kept (0 to 1), chosen by trace id, so a request and its tasks are kept "
            "or dropped together."),
    Setting("tracing.headers", as_headers, (),
            "Headers sent with every export, name=value,name2=value2 (a collector's API key).",
            secret=True),
    Setting("tracing.export_timeout", as_float(0.1), 10.0,
            "Seconds one export may take before it is given up (spans are sent from a thread of "
            "their own, never from a request)."),
    Setting("log.format", as_choice("text", "json", "auto"), "auto",
            "Log line format; auto is JSON in production and text elsewhere."),
    Setting("log.level", as_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO",
            "Level of the guestguard loggers when the ini has no logging sections."),
)

@dataclass
class SettingsReader:
    specs: dict[str, Setting] = field(default_factory=dict)

    def declare(self, settings: Iterable[Setting]) -> None:
        for spec in settings:
            if spec.name in self.specs:
                raise SettingsError(f"setting {spec.name!r} is declared twice")
            self.specs[spec.name] = spec

    def read(self, raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
        """Return ``raw`` merged with environment overrides, every declared
        setting typed; raise SettingsError naming every problem found."""
        merged = dict(raw)
        problems: list[str] = []
        env_name = _raw_value("app.env", raw, environ) or "development"
        namespaces = {name.split(".", 1)[0] for name in self.specs}

        for key in raw:
            if "." in key and key.split(".", 1)[0] in namespaces and key not in self.specs:
                problems.append(f"unknown setting {key!r} (check the spelling)")

        for name, spec in self.specs.items():
            value = _raw_value(name, raw, environ)
            if value is None or value.strip() == "":
                if spec.default is REQUIRED or env_name in spec.required_in:
                    problems.append(
                        f"setting {name!r} is required: set it in the ini file or "
                        f"the environment variable {spec.env_var}")
                else:
                    merged[name] = spec.default
                continue
            try:
                merged[name] = spec.parse(value)
            except ValueError as exc:
                source = spec.env_var if spec.env_var in environ else "the ini file"
                problems.append(f"setting {name!r} (from {source}) is invalid: {exc}")

        if not problems:
            problems.extend(combination_problems(merged))
        if not problems and merged.get("app.env") == "production":
            problems.extend(production_problems(merged, self.specs))

        if problems:
            raise SettingsError("; ".join(problems))
        known = {spec.env_var for spec in self.specs.values()}
        for variable in sorted(environ):
            if (variable.startswith(ENV_PREFIX) and variable not in known
                    and not variable.startswith(OWN_ENV_PREFIXES)):
                log.warning("environment variable %s matches no setting (check the spelling)", variable)
        return merged

    def public_view(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Declared settings with secrets masked, for listings and logs."""
        return {
            name: ("********" if spec.secret and settings.get(name) else settings.get(name))
            for name, spec in sorted(self.specs.items())
        }


def combination_problems(settings: Mapping[str, Any]) -> list[str]:
    """Settings each valid alone that together open a hole."""
    problems = []
    allowed, proxies = settings.get("metrics.allowed_networks", ()), settings.get("app.trusted_proxies", ())
    if allowed and not settings.get("metrics.token"):
        # A request the proxy forwards without X-Forwarded-For counts as the
        # proxy's own address: anyone the proxy serves would pass the allowlist.
        shared = sorted({str(network) for network in allowed for proxy in proxies
                         if network.version == proxy.version and network.overlaps(proxy)})
        if shared:
            problems.append(
                f"settings 'metrics.allowed_networks' and 'app.trusted_proxies' overlap ({', '.join(shared)}): a "
                "request a proxy forwards without X-Forwarded-For counts as the proxy's own address, so anyone "
                "the proxy serves could read /metrics; list only the scraper's addresses in "
                "metrics.allowed_networks, or also set metrics.token (GG_METRICS_TOKEN)")
    return problems


def production_problems(settings: Mapping[str, Any], specs: Mapping[str, Setting]) -> list[str]:
    """Settings that work on a laptop and fail quietly in production."""
    problems = []
    secret = settings.get("app.secret", "")
    if secret == specs["app.secret"].default or len(secret) < 32:
        problems.append("setting 'app.secret' must be at least 32 random characters in production: "
                        f"set {env_var_for('app.secret')}")
    if settings.get("huey.immediate") or str(settings.get("huey.url", "")).startswith("memory"):
        problems.append("settings 'huey.url' and 'huey.immediate': production needs a shared queue "
                        "(redis:// or sqlite:///) that workers read, not memory:// or immediate mode")
    if str(settings.get("guard.stream.url", "")).startswith("memory") and not settings.get(
            "huey.in_process_worker"):
        problems.append("setting 'guard.stream.url': with separate worker processes the live activity "
                        "feed needs redis:// shared by every process, not memory://")
    if str(settings.get("notifications.breaker.url", "")).startswith("memory") and not settings.get(
            "huey.in_process_worker"):
        log.warning("notifications.breaker.url is memory:// in production: each worker process keeps its own "
                    "circuit breakers; use redis:// so they open and close for all at once")
    if str(settings.get("db.url", "")).startswith("sqlite"):
        log.warning("db.url is SQLite in production: fine for one small host, not for several")
    return problems


def _raw_value(name: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    env_var = env_var_for(name)
    # An empty variable counts as unset, so a blank export never hides the ini value.
    if environ.get(env_var, "").strip():
        return environ[env_var]
    value = raw.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def raw_flag(name: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Read one boolean before the full reader exists (plugin loading needs it)."""
    value = _raw_value(name, raw, environ)
    if value is None:
        return False
    try:
        return as_bool(value)
    except ValueError as exc:
        raise SettingsError(f"setting {name!r} is invalid: {exc}") from None


def raw_list(name: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, ...]:
    value = _raw_value(name, raw, environ)
    return as_list(value) if value else ()
