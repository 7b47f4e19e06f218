"""What stands between a message and its provider: which provider (the
channel's, or its fallback), whether to hold the message (the provider's
circuit breaker is open, or the recipient's quiet hours), and a send bounded
by ``notifications.send_timeout_seconds``.

Holding a message puts its job back for later without counting an attempt:
a provider outage or a night does not use up the message's retries.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from guestguard.db import utcnow
from guestguard.notifications import quiet_hours
from guestguard.notifications.suppression import GUEST_MESSAGE
from guestguard.plugins import NotificationProvider, OutgoingMessage, PermanentDeliveryError, TransientDeliveryError
from guestguard.tasks import OUTCOME_UNKNOWN, enqueue_job, postpone_job

log = logging.getLogger(__name__)

DELIVERIES = Counter("gg_deliveries_total", "Messages handed to a provider, by provider, channel and outcome "
                     "(sent; permanent or transient refusal; unknown: it ran out of time and may have been "
                     "accepted).", ["provider", "channel", "outcome"])



@dataclass(frozen=True)
class Hold:
    """Not now: the message waits until ``until`` (UTC) for ``reason``."""

    until: dt.datetime
    reason: str


@dataclass(frozen=True)
class Route:
    """The provider to try first, and the fallback to try after it fails
    transiently (None: no fallback, or it is the first already)."""

    provider: NotificationProvider
    fallback: NotificationProvider | None


def channel_providers(registry, channel: str) -> tuple[NotificationProvider | None, NotificationProvider | None]:
    """The channel's provider and its fallback (from settings)."""
    return (registry["notifications.providers"].get(channel),
            registry["notifications.fallbacks"].get(channel))


def quiet_hours_hold(ctx, notification, now: dt.datetime) -> Hold | None:
    """A guest's text outside the allowed hours waits for the next allowed
    minute; account messages (a code the person asked for) never wait."""
    settings = ctx.settings
    channel = ctx.registry["notifications.channels"].get(notification.channel)
    if (channel is None or not channel.quiet_hours or notification.kind != GUEST_MESSAGE
            or not settings["notifications.quiet_hours.enabled"]):
        return None
    opens = quiet_hours.next_allowed(
        now, notification.recipient, (notification.context or {}).get("timezone"),
        start=settings["notifications.quiet_hours.allowed_from"],
        end=settings["notifications.quiet_hours.allowed_until"])
    return Hold(opens, "quiet hours at the recipient's") if opens is not None else None


def choose_route(ctx, notification) -> Route | Hold:
    """The channel's provider when its breaker lets it; else the fallback
    when there is one and its breaker lets it; else hold the message until
    the first of them may be tried again."""
    primary, fallback = channel_providers(ctx.registry, notification.channel)
    breakers = ctx.registry["notifications.breakers"]
    verdict = breakers.verdict(primary.name)
    if verdict.go:
        return Route(primary, fallback)
    holds = [verdict.hold_until]
    if fallback is not None:
        fallback_verdict = breakers.verdict(fallback.name)
        if fallback_verdict.go:
            log.info("notification %s goes through the fallback %s: %s's circuit breaker is open",
                     notification.id, fallback.name, primary.name)
            return Route(fallback, None)
        holds.append(fallback_verdict.hold_until)
    until = dt.datetime.fromtimestamp(min(holds), dt.UTC)
    return Hold(until, f"the circuit breaker of {primary.name} is open")


def hold(ctx, notification, held: Hold) -> None:
    """Put the claimed notification back for ``held.until`` (its attempt not
    counted) and queue its task for then."""
    postpone_job(notification, held.until, f"held until {held.until.isoformat()}: {held.reason}")
    enqueue_job(ctx, notification, eta=held.until)
    log.info("notification %s held until %s: %s", notification.id, held.until.isoformat(), held.reason)


def plan(ctx, notification) -> Route | Hold:
    """Quiet hours first (no provider is asked for a message that must wait
    anyway), then the providers' breakers."""
    return quiet_hours_hold(ctx, notification, utcnow()) or choose_route(ctx, notification)


class SendTimedOut(Exception):
    """The provider did not answer within the send timeout."""


@dataclass(frozen=True)
class Patience:
    """How long a send may take before ``impatient()`` is called once (the
    send goes on): a batch gives back the messages still waiting behind it."""

    seconds: float
    impatient: Callable[[], None]


def timed_send(provider: NotificationProvider, message: OutgoingMessage,
               patience: Patience | None = None) -> str | None:
    """``provider.send(message)``, given up after ``message.timeout`` seconds
    plus a second's grace: a provider is told the timeout and should honour
    it; one that does not is left to finish in its thread (daemon, so it
    never holds a stopping worker) while the worker moves on."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["id"] = provider.send(message)
        except BaseException as exc:  # handed to the worker's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"send-{message.notification_id}", daemon=True)
    thread.start()
    limit = message.timeout + 1 if message.timeout else None
    if patience is not None and (limit is None or patience.seconds < limit):
        started = time.monotonic()
        thread.join(patience.seconds)
        if thread.is_alive():
            patience.impatient()
            thread.join(None if limit is None else max(limit - (time.monotonic() - started), 0))
    else:
        thread.join(limit)
    if thread.is_alive():
        raise SendTimedOut(f"{provider.name} did not answer within {message.timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("id")  # type: ignore[return-value]


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(e, (TimeoutError, SendTimedOut)) for e in (exc, exc.__cause__, exc.__context__))


@dataclass(frozen=True)
class Outcome:
    provider_message_id: str | None
    error: str | None
    permanent: bool
    # The provider that accepted the message, or the last one tried.
    provider: str | None
    # The suppression reason a permanent refusal gave (the number texted STOP).
    suppress: str | None = None


def send_through(route: Route, message: OutgoingMessage, breakers, patience: Patience | None = None) -> Outcome:
    """Send through the route's provider; after a transient refusal, through
    its fallback. A send that ran out of time may have been accepted: it is
    not handed to the fallback (the person could get two), and the next
    attempt asks the provider first."""
    candidates = [route.provider] + ([route.fallback] if route.fallback is not None else [])
    outcome = Outcome(None, "no provider could be tried", False, route.provider.name)
    for index, provider in enumerate(candidates):
        if index and not breakers.verdict(provider.name).go:
            break
        try:
            provider_message_id = timed_send(provider, message, patience)
        except PermanentDeliveryError as exc:
            DELIVERIES.labels(provider.name, message.channel, "permanent").inc()
            return Outcome(None, f"permanent: {exc}", True, provider.name, exc.suppress)
        except Exception as exc:  # transient by contract, whatever the type
            breakers.failed(provider.name)
            words = str(exc) if isinstance(exc, TransientDeliveryError | SendTimedOut) else repr(exc)
            DELIVERIES.labels(provider.name, message.channel, "unknown" if _timed_out(exc) else "transient").inc()
            if _timed_out(exc):
                # The provider may have accepted it: the next attempt asks it
                # (find_accepted) before sending, as after a worker that died.
                return Outcome(None, f"{OUTCOME_UNKNOWN}: transient: {words}", False, provider.name)
            outcome = Outcome(None, f"transient: {words}", False, provider.name)
            if index + 1 < len(candidates):
                log.warning("notification %s: %s failed (%s); trying the fallback %s", message.notification_id,
                            provider.name, type(exc).__name__, candidates[index + 1].name)
            continue
        breakers.succeeded(provider.name)
        DELIVERIES.labels(provider.name, message.channel, "sent").inc()
        return Outcome(provider_message_id, None, False, provider.name)
    return outcome

