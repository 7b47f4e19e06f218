"""A circuit breaker per notification provider, shared by every worker.

After ``notifications.breaker.failures`` transient failures in a row a
provider is *open* for ``notifications.breaker.cooldown_seconds``: its
messages are held (put back for after the cool-down, no attempt counted)
instead of burning their retries against a provider that is down. When the
cool-down is over the breaker is *half-open*: one attempt (the probe) goes
through; its success closes the breaker, its failure opens it again for
another cool-down. Messages that meet a half-open breaker while the probe
is out wait for the probe's answer.

The state lives where ``notifications.breaker.url`` says: in this process
(``memory://``, one worker) or in Redis, shared by every worker. Times are
the application's clock (stored as numbers), so every worker and a test
that moves the clock read the same state.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
TRANSITIONS = Counter("gg_notification_breaker_transitions", "A provider's circuit breaker opening (after "
                      "consecutive transient failures, or a failed probe) or closing (a probe delivered).",
                      ["provider", "to"])
IS_OPEN = Gauge("gg_notification_breaker_open", "1 while a provider's circuit breaker holds its messages "
                "(open or half-open), as a running process last saw it.", ["provider"],
                multiprocess_mode="livemax")
STORE_ERRORS = Counter("gg_notification_breaker_store_errors", "Breaker state that could not be read or "
                       "written (Redis away): the provider was treated as closed.", ["provider"])
KEY_PREFIX = "gg:breaker:"
# After the store failed, seconds it is not asked again (every breaker counts
# as closed meanwhile): a Redis that hangs costs one timeout per pause, not
# one per message; the warning is logged once per pause too.
STORE_PAUSE_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    """May a message go to the provider now? When not, until when to hold it
    (seconds since the epoch, the application's clock)."""

    go: bool
    hold_until: float = 0.0
    # This attempt is the half-open breaker's one probe.
    probe: bool = False


GO = Verdict(True)


class MemoryState:
    """Breaker state of one process (development, tests, a single worker)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, float]] = {}

    def read(self, provider: str) -> dict[str, float]:
        with self._lock:
            return dict(self._values.get(provider, {}))

    def failed(self, provider: str) -> int:
        with self._lock:
            state = self._values.setdefault(provider, {})
            state["failures"] = state.get("failures", 0) + 1
            return int(state["failures"])

    def put(self, provider: str, **values: float) -> None:
        with self._lock:
            self._values.setdefault(provider, {}).update(values)

    def take_probe(self, provider: str, until: float, now: float) -> bool:
        with self._lock:
            state = self._values.setdefault(provider, {})
            if state.get("probe_until", 0) > now:
                return False
            state["probe_until"] = until
            return True

    def clear(self, provider: str) -> None:
        with self._lock:
            self._values.pop(provider, None)


class RedisState:
    """Breaker state in one Redis hash per provider, shared by every worker.
    Each change is one atomic command (HINCRBY, HSET, a small script for the
    probe), so workers failing at once count every failure and only one of
    them takes the probe."""

    # Take the probe when no live one is out: KEYS[1] the hash, ARGV the
    # probe's end and now.
    TAKE_PROBE = """
    local current = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
    if current > tonumber(ARGV[2]) then return 0 end
    redis.call('HSET', KEYS[1], 'probe_until', ARGV[1])
    return 1
    """
    # Forget an idle provider's state after a day: it is about recent failures.
    TTL_SECONDS = 86400

    def __init__(self, url: str):
        # A worker asks before every send: a Redis outage must cost a
        # fraction of a second per message, not the default timeouts.
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._take_probe = self.client.register_script(self.TAKE_PROBE)

    def read(self, provider: str) -> dict[str, float]:
        return {key.decode(): float(value) for key, value in self.client.hgetall(KEY_PREFIX + provider).items()}

    def failed(self, provider: str) -> int:
        pipe = self.client.pipeline()
        pipe.hincrby(KEY_PREFIX + provider, "failures", 1)
        pipe.expire(KEY_PREFIX + provider, self.TTL_SECONDS)
        return int(pipe.execute()[0])

    def put(self, provider: str, **values: float) -> None:
        pipe = self.client.pipeline()
        pipe.hset(KEY_PREFIX + provider, mapping={key: repr(value) for key, value in values.items()})
        pipe.expire(KEY_PREFIX + provider, self.TTL_SECONDS)
        pipe.execute()

    def take_probe(self, provider: str, until: float, now: float) -> bool:
        return bool(self._take_probe(keys=[KEY_PREFIX + provider], args=[repr(until), repr(now)]))

    def clear(self, provider: str) -> None:
        self.client.delete(KEY_PREFIX + provider)


class Breakers:
    """The circuit breakers of every provider, on one state store.

    When the store cannot be reached (Redis down) a provider counts as
    closed: messages go out and failures are not counted. This fails closed
    on purpose: the breaker only spares retries against a provider that is
    down, and the ordinary backoff still bounds those, whereas holding every
    message while Redis is away would stop all delivery for an outage of a
    different system (the house rule: Redis down, work continues)."""

    def __init__(self, state, *, failures: int, cooldown: float, probe_seconds: float,
                 clock=time.time):
        self.state, self.failures, self.cooldown = state, failures, cooldown
        # How long a probe may take before another attempt may probe: the
        # send timeout, plus a margin for recording its outcome.
        self.probe_seconds = probe_seconds
        self.clock = clock
        self._store_back_at = 0.0  # time.monotonic() from which the store is asked again

    def verdict(self, provider: str) -> Verdict:
        """Whether a message may go to ``provider`` now."""
        now = self.clock()
        if self._store_paused():
            return GO
        try:
            state = self.state.read(provider)
            open_until = state.get("open_until", 0.0)
            if not open_until:
                return GO
            if now < open_until:
                return Verdict(False, open_until)
            if self.state.take_probe(provider, now + self.probe_seconds, now):
                log.info("notification provider %s: circuit breaker half-open, one message probes it", provider)
                return Verdict(True, probe=True)
            return Verdict(False, max(state.get("probe_until", now), now) + 1)
        except redis.RedisError as exc:
            self._unavailable(provider, exc)
            return GO

    def succeeded(self, provider: str) -> None:
        """A message was accepted: the provider works; close its breaker."""
        if self._store_paused():
            return
        try:
            state = self.state.read(provider)
            if not state:
                return
            self.state.clear(provider)
        except redis.RedisError as exc:
            self._unavailable(provider, exc)
            return
        if state.get("open_until"):
            TRANSITIONS.labels(provider, CLOSED).inc()
            IS_OPEN.labels(provider).set(0)
            log.warning("notification provider %s: circuit breaker closed, a message went through", provider)

    def failed(self, provider: str) -> None:
        """A transient failure: count it; open the breaker at the threshold,
        or again when the failure was the half-open breaker's probe."""
        now = self.clock()
        if self._store_paused():
            return
        try:
            state = self.state.read(provider)
            probing = bool(state.get("open_until")) and now >= state["open_until"]
            if probing:
                count = int(state.get("failures", 0))
            else:
                count = self.state.failed(provider)
                if count < self.failures or state.get("open_until"):
                    # Below the threshold, or already open (an attempt that
                    # started before it opened): nothing changes.
                    return
            self.state.put(provider, open_until=now + self.cooldown, probe_until=0.0)
        except redis.RedisError as exc:
            self._unavailable(provider, exc)
            return
        TRANSITIONS.labels(provider, OPEN).inc()
        IS_OPEN.labels(provider).set(1)
        why = "its probe failed" if probing else f"{count} transient failures in a row"
        log.warning("notification provider %s: circuit breaker open for %g s (%s); its messages are held",
                    provider, self.cooldown, why)

    def status(self, provider: str) -> str:
        """CLOSED, OPEN or HALF_OPEN, for operators (``guestguard`` and logs)."""
        try:
            open_until = self.state.read(provider).get("open_until", 0.0)
        except redis.RedisError:
            return CLOSED
        if not open_until:
            return CLOSED
        return OPEN if self.clock() < open_until else HALF_OPEN

    def _store_paused(self) -> bool:
        return time.monotonic() < self._store_back_at

    def _unavailable(self, provider: str, exc: Exception) -> None:
        STORE_ERRORS.labels(provider).inc()
        self._store_back_at = time.monotonic() + STORE_PAUSE_SECONDS
        log.warning("circuit breaker state unavailable (%s): every provider counts as closed for the next "
                    "%g s", type(exc).__name__, STORE_PAUSE_SECONDS)


def make_breakers(settings) -> Breakers:
    url = settings["notifications.breaker.url"]
    state = MemoryState() if url.startswith("memory") else RedisState(url)
    return Breakers(state, failures=settings["notifications.breaker.failures"],
                    cooldown=settings["notifications.breaker.cooldown_seconds"],
                    probe_seconds=settings["notifications.send_timeout_seconds"] + 5)
