"""The limiter: named policies (a limit and what it counts by), checked with
the ``limits`` library's moving window, whose check-and-count is one atomic
Lua call in Redis. If the store fails, the limiter fails open: a request is
never refused or broken because Redis is down."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import RedisStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from guestguard.validation import normalize_email

log = logging.getLogger(__name__)

BLOCKS = Counter("ratelimit_block_total", "Requests refused by a rate limit.", ["route"])
BACKEND_ERRORS = Counter("ratelimit_backend_errors_total",
                         "Rate-limit checks that failed open because the store failed.")
# One failure logged per this many seconds: a Redis outage must not flood the logs.
ERROR_LOG_INTERVAL = 60.0


DIGEST_LENGTH = 32


def _digest(value: str) -> str:
    """Keys never hold emails or tokens as they are."""
    return hashlib.sha256(value.encode()).hexdigest()[:DIGEST_LENGTH]


def by_ip(request) -> str:
    """The client's address; for IPv6 its /64, which one subscriber holds.
    An IPv4 client reached over IPv6 (``::ffff:203.0.113.7``, as a dual-stack
    listener reports it) counts by its IPv4 address, not in the one /64 all
    such clients share."""
    address = request.client_ip
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


BODY_PEEK = 65536


def _email_in_body(request) -> str:
    """The email a login-like request names, as the view will read it;
    never more than BODY_PEEK bytes read, never an error."""
    try:
        if request.content_type == "application/json":
            stream = request.body_file_seekable
            raw = stream.read(BODY_PEEK)
            stream.seek(0)
            body = json.loads(raw or b"{}")
            value = body.get("email") if isinstance(body, dict) else None
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            value = request.POST.get("email")
        else:
            value = None
    except Exception:  # an unreadable body is the view's to refuse
        return ""
    if not isinstance(value, str):
        return ""
    try:
        return normalize_email(value)
    except ValueError:
        return value.strip().lower()


def by_ip_and_email(request) -> str:
    return f"{by_ip(request)}:{_digest(_email_in_body(request))}"


def by_token(request) -> str:
    return _digest(request.matchdict.get("token", "") if request.matchdict else "")


def by_caller(request) -> str:
    """The signed-in user or API key; the client IP for anyone else."""
    identity = request.identity
    if identity is not None and identity.user is not None:
        return f"user:{identity.user.id}"
    if identity is not None and identity.api_key is not None:
        return f"key:{identity.api_key.id}"
    return f"ip:{by_ip(request)}"


# What each policy counts by. Routes name a policy with the ``rate_limit``
# view option; its limit comes from the setting ``ratelimit.<name>``.
POLICY_KEYS: dict[str, Callable[[Any], str]] = {
    "signup": by_ip,
    "login": by_ip_and_email,
    "login_ip": by_ip,
    "password_change": by_caller,
    "workspace_create": by_caller,
    "workspace_invite": by_caller,
    "forgot_password": by_ip_and_email,
    "resend_verification": by_ip_and_email,
    "rsvp": by_token,
    "invitation_page": by_token,
    "invalid_link": by_ip,
    "stream_ticket": by_caller,
    "event_create": by_caller,
    "guest_create": by_caller,
    "guest_import": by_caller,
    "link_issue": by_caller,
    "test_send": by_caller,
}


@dataclass(frozen=True)
class Policy:
    name: str
    limit: RateLimitItem
    key: Callable[[Any], str]

    @property
    def header(self) -> str:
        """The policy in the IETF draft's ``RateLimit-Policy`` form."""
        return f'"{self.name}";q={self.limit.amount};w={self.limit.get_expiry()}'


@dataclass(frozen=True)
class Decision:
    policy: Policy
    allowed: bool
    retry_after: int = 0
    remaining: int = 0


class Limiter:
    def __init__(self, settings: Mapping[str, Any], policies: Mapping[str, Policy]):
        self.enabled: bool = settings["ratelimit.enabled"]
        self.storage = storage_from_string(settings["ratelimit.url"],
                                           **_storage_options(settings["ratelimit.url"]))
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.policies = dict(policies)
        self._last_error_logged = 0.0

    def check(self, policy: Policy, key: str, route: str | None = None, cost: int = 1) -> Decision:
        """Count ``cost`` against ``policy`` for ``key``; allowed or not."""
        if not self.enabled:
            return Decision(policy, True)
        try:
            if self.strategy.hit(policy.limit, policy.name, key, cost=cost):
                return Decision(policy, True)
            stats = self.strategy.get_window_stats(policy.limit, policy.name, key)
        except Exception as exc:
            self._failed(exc)
            return Decision(policy, True)
        BLOCKS.labels(route=route or policy.name).inc()
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(policy, False, retry_after=retry_after, remaining=stats.remaining)

    def forget(self, identifiers: Iterable[str] = (), email_digests: Iterable[str] = ()) -> int:
        """Delete every bucket counting one of ``identifiers`` (``user:<id>``,
        ``key:<id>``, an invitation token's digest) or an email address
        whose digest is in ``email_digests`` (from any client address):
        what an erased person leaves in the store. One pass over the
        limiter's keys; returns buckets deleted. Raises when the store
        fails (the caller decides)."""
        exact, emails = set(identifiers), set(email_digests)
        if not exact and not emails:
            return 0
        gone = [key for key in self._bucket_keys() if _counts_for(key, exact, emails)]
        for key in gone:
            self.storage.clear(key)
        return len(gone)

    def _bucket_keys(self) -> Iterable[str]:
        """Every bucket the limiter holds, as the storage names it."""
        if isinstance(self.storage, RedisStorage):
            prefix = self.storage.prefixed_key("")
            for raw in self.storage.get_connection().scan_iter(match=f"{prefix}{BUCKET_PREFIX}/*", count=1000):
                yield raw.decode().removeprefix(prefix)
        else:
            yield from [key for key in list(self.storage.events) + list(self.storage.storage)
                        if key.startswith(BUCKET_PREFIX + "/")]

    def _failed(self, exc: Exception) -> None:
        BACKEND_ERRORS.inc()
        now = time.monotonic()
        if now - self._last_error_logged >= ERROR_LOG_INTERVAL:
            self._last_error_logged = now
            log.error("rate limiter store failed, letting requests through: %s", type(exc).__name__)


# A bucket's key: LIMITER/<policy>/<what it counts>/<amount>/<multiples>/<granularity>
# (limits' RateLimitItem.key_for); what it counts may itself hold a "/" (an IPv6 /64).
BUCKET_PREFIX = "LIMITER"


def _counts_for(key: str, exact: set[str], emails: set[str]) -> bool:
    parts = key.split("/")
    if len(parts) < 6:
        return False
    counted = "/".join(parts[2:-3])
    return counted in exact or (bool(emails) and counted.rpartition(":")[2] in emails)


def person_keys(*, user_ids: Iterable[Any] = (), api_key_ids: Iterable[Any] = (),
                token_hashes: Iterable[str] = ()) -> set[str]:
    """What the policies count a person by: their account, their
    workspaces' API keys, the invitation links (by the SHA-256 stored for
    each, whose head is the digest the token policies count by)."""
    return ({f"user:{user_id}" for user_id in user_ids} | {f"key:{key_id}" for key_id in api_key_ids}
            | {token_hash[:DIGEST_LENGTH] for token_hash in token_hashes})


def email_digest(email: str) -> str:
    """What the login-like policies count an address by (next to the IP)."""
    try:
        return _digest(normalize_email(email))
    except ValueError:
        return _digest(email.strip().lower())


def _storage_options(url: str) -> dict[str, Any]:
    # A dead Redis must cost a request milliseconds, not the default timeouts.
    if url.startswith(("redis://", "rediss://")):
        return {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
    return {}


def policies_from(settings: Mapping[str, Any]) -> dict[str, Policy]:
    policies = {name: Policy(name, parse(settings[f"ratelimit.{name}"]), key)
                for name, key in POLICY_KEYS.items()}
    policies["api"] = Policy("api", parse(settings["ratelimit.api"]), by_ip)
    # Counted by the account a task is about to email (``allow_account_mail``),
    # not by anything in a request.
    policies[ACCOUNT_MAIL] = Policy(ACCOUNT_MAIL, parse(settings["ratelimit.account_mail"]), by_caller)
    return policies


ACCOUNT_MAIL = "account_mail"


def allow_account_mail(registry, user_id) -> bool:
    """Whether an account may be sent one more email that anyone can ask for
    (a verification or reset link): however many addresses ask, one mailbox
    gets at most ``ratelimit.account_mail``. Fails open, like every limit."""
    limiter: Limiter = registry["ratelimit"]
    return limiter.check(limiter.policies[ACCOUNT_MAIL], f"user:{user_id}").allowed


def api_keys_of(request) -> list[str]:
    """The API ceiling counts per client IP and, for a request made with a
    workspace API key, per key too."""
    keys = [f"ip:{by_ip(request)}"]
    identity = request.identity  # a verified key only: a key's prefix is not secret
    if identity is not None and identity.api_key is not None:
        keys.append(f"key:{identity.api_key.id}")
    return keys
