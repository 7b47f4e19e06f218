"""Live activity for the hosts' streams: publish after commit, fan out to the
streams this process serves.

``guard.stream.url`` chooses the broker: ``memory://`` hands messages
straight to this process's hub (one process: ``make run``), ``redis://``
publishes on a Redis channel per event, and every web process reads them
all through one pattern subscription on one connection, whatever the number
of streams it serves. An idle stream holds a queue here and nothing else:
no database connection, no Redis connection of its own.
"""
from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
import weakref
from typing import Any

import redis
from prometheus_client import Gauge

log = logging.getLogger(__name__)

STREAMS_OPEN = Gauge("gg_live_streams_open", "Live activity streams the web processes serve now.",
                     multiprocess_mode="livesum")

CHANNEL_PREFIX = "guestguard:activity:"
QUEUE_LIMIT = 500          # messages one slow stream may have waiting
RECONNECT_DELAY = 1.0      # seconds between attempts when Redis is away
# Told to every stream after the Redis subscription came back: what was
# published meanwhile is lost, so each stream catches up from the database.
RESYNC = ""
# Told to every stream when this process stops serving: the stream ends now
# and the page reconnects elsewhere.
CLOSING = "closing"


class Full(Exception):
    """This process already serves as many streams as it may."""


class Listener:
    """One stream's inbox. ``get`` returns a message (a JSON string), or
    None when the stream must end (it fell too far behind)."""

    def __init__(self, hub: Hub, event_id: str, holder: str):
        self.hub = hub
        self.event_id = event_id
        self.holder = holder
        self.inbox: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        self.overflowed = False

    def deliver(self, message: str) -> None:
        try:
            self.inbox.put_nowait(message)
        except queue.Full:
            # Better to end the stream (the page reconnects and catches up
            # from the database) than to hold unbounded memory for it.
            self.overflowed = True
            self.end()

    def end(self, last: str | None = None) -> None:
        """Make the stream finish: now if it is waiting, else at its next
        wait. ``last`` is its last message (None: just end)."""
        try:
            self.inbox.put_nowait(last)
        except queue.Full:  # nobody waits on a full inbox: swap it
            self.inbox = queue.Queue(maxsize=1)
            self.inbox.put_nowait(last)

    def get(self, timeout: float) -> str | None:
        """The next message; raises queue.Empty after ``timeout`` seconds."""
        return self.inbox.get(timeout=timeout)

    def close(self) -> None:
        self.hub.remove(self)


_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()


class Hub:
    """The streams of this process, by event."""

    def __init__(self):
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}
        self._holders: dict[str, list[Listener]] = {}  # oldest first
        self._count = 0
        self.closing = False
        _HUBS.add(self)

    def listen(self, event_id: uuid.UUID | str, holder: str = "", limit: int | None = None,
               per_holder: int | None = None) -> Listener:
        """A new stream's inbox. A holder already at ``per_holder`` streams
        loses its oldest (most likely a page closed or reloaded, whose
        server side lingers until its next write fails); Full when the
        process already serves ``limit``."""
        listener = Listener(self, str(event_id), holder)
        with self._lock:
            if self.closing:  # a stream opened while the process stops ends at once
                listener.end(CLOSING)
                return listener
            held = self._holders.setdefault(holder, [])
            if per_holder is not None and len(held) >= per_holder:
                oldest = held[0]
                self._forget(oldest)
                oldest.end()
            if limit is not None and self._count >= limit:
                raise Full("this process serves as many live streams as it may")
            self._listeners.setdefault(listener.event_id, set()).add(listener)
            self._holders.setdefault(holder, []).append(listener)
            self._count += 1
            STREAMS_OPEN.inc()
        return listener

    def remove(self, listener: Listener) -> None:
        with self._lock:
            self._forget(listener)

    def _forget(self, listener: Listener) -> None:
        listeners = self._listeners.get(listener.event_id)
        if listeners is None or listener not in listeners:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[listener.event_id]
        self._count -= 1
        STREAMS_OPEN.dec()
        held = self._holders[listener.holder]
        held.remove(listener)
        if not held:
            del self._holders[listener.holder]

    def dispatch(self, event_id: str, message: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(event_id, ()))
        for listener in listeners:
            listener.deliver(message)

    def broadcast(self, message: str) -> None:
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.deliver(message)

    def close(self) -> int:
        """End every stream, and every one opened from now on, with CLOSING.
        Returns how many were open."""
        with self._lock:
            self.closing = True
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.end(CLOSING)
        return len(listeners)

    @property
    def streams(self) -> int:
        with self._lock:
            return self._count


def end_streams() -> int:
    """This process stops serving: end its live streams now (and any opened
    from now on), each page reconnecting to a process that serves. Returns
    how many were open. Called by the web server's hooks (gunicorn.conf.py)."""
    return sum(hub.close() for hub in list(_HUBS))


class MemoryBroker:
    """One process: publishing is dispatching."""

    def __init__(self):
        self.hub = Hub()

    def publish(self, event_id: uuid.UUID | str, message: str) -> None:
        self.hub.dispatch(str(event_id), message)

    def listen(self, event_id: uuid.UUID | str, **limits) -> Listener:
        return self.hub.listen(event_id, **limits)


class RedisBroker:
    """Several processes: publish on Redis; each process that serves streams
    reads every event's channel on one connection, started on first use."""

    def __init__(self, url: str):
        self.hub = Hub()
        # Publishing happens after a guest's request committed: a Redis outage
        # must cost it a fraction of a second, not the default timeouts.
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.25)
        self.reader_client = redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)
        self._reader: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def publish(self, event_id: uuid.UUID | str, message: str) -> None:
        try:
            self.client.publish(CHANNEL_PREFIX + str(event_id), message)
        except redis.RedisError as exc:
            # A live feed that misses an item catches up from the database on
            # its next reconnect; the fact itself is already committed.
            log.warning("could not publish live activity: %s", type(exc).__name__)

    def listen(self, event_id: uuid.UUID | str, **limits) -> Listener:
        listener = self.hub.listen(event_id, **limits)
        self._ensure_reader()
        return listener

    def _ensure_reader(self) -> None:
        with self._start_lock:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read, name="guestguard-live", daemon=True)
                self._reader.start()

    def _read(self) -> None:
        reconnecting = False
        while True:
            pubsub = self.reader_client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                if reconnecting:
                    self.hub.broadcast(RESYNC)
                reconnecting = True
                while True:
                    message = pubsub.get_message(timeout=10.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    self.hub.dispatch(channel.removeprefix(CHANNEL_PREFIX), message["data"].decode())
            except Exception as exc:  # keep serving streams; reconnect
                log.warning("live activity subscription lost (%s); reconnecting", type(exc).__name__)
                time.sleep(RECONNECT_DELAY)
            finally:
                with contextlib.suppress(Exception):  # the connection is already gone
                    pubsub.close()


def make_broker(url: str) -> MemoryBroker | RedisBroker:
    if url.startswith("memory"):
        return MemoryBroker()
    return RedisBroker(url)


def publish_after_commit(ctx, event_id: uuid.UUID, payload: dict[str, Any]) -> None:
    """Send ``payload`` to the event's live streams once the current
    transaction commits (never for one that rolls back)."""
    broker = ctx.registry["live.broker"]
    message = json.dumps(payload, separators=(",", ":"))

    def after_commit(committed: bool) -> None:
        if committed:
            broker.publish(event_id, message)

    ctx.tm.get().addAfterCommitHook(after_commit)
