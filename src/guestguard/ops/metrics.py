"""Prometheus metrics: what every request costs, the state of the queues and
the outbox, served at ``/metrics`` to the scraper the settings allow.

Counters and histograms live in the modules that count (``ratelimit``,
``guard``, ``notifications``, ``tasks``...); this module adds the request
tween, the figures read from the database and the queue at scrape time, and
the exposition itself.

Under gunicorn several worker processes count separately: with
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it, wipes it at start
and marks each exited worker dead) every process writes its values to files
there and a scrape of any worker adds them all up. Without it a scrape sees
the one process that answers.
"""
from __future__ import annotations

import collections
import datetime as dt
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from guestguard import rls
from guestguard.db import utcnow

log = logging.getLogger(__name__)

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A request no route matched (a 404 for an unknown path, a static file):
# one label value, so a scan of random paths adds no series.
UNMATCHED = "(unmatched)"

REQUESTS = Counter("gg_http_requests_total", "Requests answered, by route name and status class (2xx...5xx).",
                   ["route", "status"])
LATENCY = Histogram("gg_http_request_duration_seconds", "Seconds from the request's arrival to its answer "
                    "(a streamed body's time is not included), by route name.", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def metrics_tween_factory(handler, registry):
    """Counts each request under its route's name (never its path, which
    holds ids and tokens) with its status class, and times it."""

    def tween(request):
        started = time.perf_counter()
        status = 500
        try:
            response = handler(request)
            status = response.status_code
            return response
        finally:
            route = request.matched_route.name if request.matched_route is not None else UNMATCHED
            REQUESTS.labels(route=route, status=status_class(status)).inc()
            LATENCY.labels(route=route).observe(time.perf_counter() - started)

    return tween


# --- who may read them ------------------------------------------------------------


def allowed(settings: Mapping[str, Any], authorization: str, address: str) -> bool:
    """Whether a scrape may read the metrics: every check the settings
    configure passes (the bearer token, the address allowlist); with none
    configured nobody may."""
    token, networks = settings["metrics.token"], settings["metrics.allowed_networks"]
    if not token and not networks:
        return False
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False
    if networks:
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return False
        if not any(client in network for network in networks):
            return False
    return True


# --- what a scrape reads ----------------------------------------------------------


def process_metrics() -> bytes:
    """The counters, histograms and gauges of this process or, in
    multiprocess mode, of every process writing to the shared directory."""
    if os.environ.get(MULTIPROC_VARIABLE):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class StateCollector:
    """Figures read when scraped, the same whichever process answers: the
    task queue's depth, the outbox, scheduled messages and the webhook inbox
    by state, and how long the oldest unprocessed webhook has waited.
    ``gg_metrics_source_up`` says whether the database and the queue could
    be read (a source that could not is left out, not reported as zero)."""

    def __init__(self, engine, huey):
        self.engine = engine
        self.huey = huey

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("gg_metrics_source_up", "1 when the scrape could read the source (database, "
                               "queue), 0 when it could not.", labels=["source"])
        families: list[Any] = []
        try:
            families += self._queue()
            up.add_metric(["queue"], 1)
        except Exception as exc:  # Redis away, or any error of the queue's storage
            log.warning("metrics: the task queue could not be read (%s)", type(exc).__name__)
            up.add_metric(["queue"], 0)
        try:
            families += self._database()
            up.add_metric(["database"], 1)
        except SQLAlchemyError as exc:
            log.warning("metrics: the database could not be read (%s)", type(exc).__name__)
            up.add_metric(["database"], 0)
        return [*families, up]

    def _queue(self) -> list[Any]:
        depth = GaugeMetricFamily("gg_task_queue_depth", "Tasks waiting in the queue for a worker.")
        depth.add_metric([], self.huey.pending_count())
        by_task = GaugeMetricFamily("gg_task_queue_depth_by_task", "Tasks waiting in the queue for a worker, "
                                    f"by task, among the next {QUEUE_SCAN:,} to run (gg_task_queue_depth "
                                    "counts them all).", labels=["task"])
        for task, count in sorted(waiting_by_task(self.huey).items()):
            by_task.add_metric([task], count)
        scheduled = GaugeMetricFamily("gg_task_queue_scheduled", "Tasks queued to run later (a retry, an eta).")
        scheduled.add_metric([], self.huey.scheduled_count())
        return [depth, by_task, scheduled]

    def _database(self) -> list[Any]:
        from guestguard.notifications.models import Notification
        from guestguard.reminders.models import ScheduledMessage
        from guestguard.tasks import PENDING, RUNNING
        from guestguard.webhooks.models import InboxEntry

        outbox = GaugeMetricFamily("gg_outbox_messages", "Notifications (the outbox) by channel and status.",
                                   labels=["channel", "status"])
        scheduled = GaugeMetricFamily("gg_scheduled_messages", "Scheduled messages (reminders) by state.",
                                      labels=["state"])
        inbox = GaugeMetricFamily("gg_webhook_inbox", "Provider webhooks in the inbox by status.",
                                  labels=["status"])
        lag = GaugeMetricFamily("gg_webhook_inbox_lag_seconds", "Seconds the oldest webhook not yet processed "
                                "has waited since it arrived; 0 when none waits.")
        with self.engine.connect() as connection:
            rls.apply_to(connection, rls.SYSTEM)  # counts across every workspace
            for channel, status, count in connection.execute(
                    select(Notification.channel, Notification.status, func.count())
                    .group_by(Notification.channel, Notification.status)):
                outbox.add_metric([channel, status], count)
            for state, count in connection.execute(
                    select(ScheduledMessage.state, func.count()).group_by(ScheduledMessage.state)):
                scheduled.add_metric([state], count)
            for status, count in connection.execute(
                    select(InboxEntry.status, func.count()).group_by(InboxEntry.status)):
                inbox.add_metric([status], count)
            oldest = connection.execute(select(func.min(InboxEntry.received_at))
                                        .where(InboxEntry.status.in_((PENDING, RUNNING)))).scalar()
        lag.add_metric([], max(0.0, (utcnow() - _aware(oldest)).total_seconds()) if oldest is not None else 0.0)
        return [outbox, scheduled, inbox, lag]


# The most queued tasks a scrape reads to count them by task: a backlog of
# millions costs a scrape no more than this.
QUEUE_SCAN = 10_000


def waiting_by_task(huey) -> collections.Counter:
    """How many of the next QUEUE_SCAN tasks to run each task has, by the
    task's name without the package prefix (as gg_task_runs_total names it)."""
    counts: collections.Counter = collections.Counter()
    for data in huey.storage.enqueued_items(QUEUE_SCAN):
        counts[huey.serializer.deserialize(data).name.removeprefix("guestguard.")] += 1
    return counts


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive values (stored as UTC) on a bare connection.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def state_metrics(registry) -> bytes:
    collected = CollectorRegistry(auto_describe=False)
    collected.register(StateCollector(registry["db.engine"], registry["huey"]))
    return generate_latest(collected)


# --- the task worker's own endpoint ----------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged line by line."""


class _ThreadedServer(WSGIServer):
    daemon_threads = True


def worker_metrics_app(settings: Mapping[str, Any]) -> Callable:
    """A WSGI app answering ``GET /metrics`` with this process's metrics to
    the scrapers the settings allow (404 to anyone else, as on the web)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics" or not allowed(
                settings, environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", "")):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
            return [b"Not Found\n"]
        body = process_metrics()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_worker_metrics(settings: Mapping[str, Any]) -> WSGIServer | None:
    """Start the worker's endpoint on ``metrics.worker_listen`` (host:port)
    in a thread of its own; None when the setting is empty or the address
    cannot be bound (logged: the worker runs its tasks without it)."""
    listen = settings["metrics.worker_listen"]
    if not listen:
        return None
    host, port = listen
    try:
        server = make_server(host, port, worker_metrics_app(settings), server_class=_ThreadedServer,
                             handler_class=_QuietHandler)
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    else:
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("task worker metrics served on %s:%d/metrics", host, server.server_port)
        return server
    # The port taken (another worker on this host, say): the tasks matter more.
    log.error("task worker metrics cannot be served on %s:%d (%s); the worker runs without them",
              host, port, problem)
    return None
