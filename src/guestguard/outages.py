"""The database is away: answer ``503`` with ``Retry-After``, not a 500 and a
traceback per request.

An error counts as the database being unavailable when the connection could
not be made or was lost (PostgreSQL refusing or dropping connections, a
server shutting down or starting up, too many connections), or no pooled
connection came free in ``db.pool_timeout``. Other database errors (a bug in
a query, a constraint) stay 500s. Such an outage is logged once per
``db.outage_log_seconds`` at WARNING, and counted by
``gg_database_unavailable_total``.

Two places catch it: an exception view, for what views and services raise
(inside the transaction; the security policy's lookup of the caller too),
and a tween just above pyramid_tm, for what is raised outside the views: a
commit can fail.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Counter
from pyramid.renderers import render_to_response
from pyramid.response import Response
from sqlalchemy import exc as sa_exc

from guestguard.errors import is_api_request, json_error, unexpected

log = logging.getLogger(__name__)

UNAVAILABLE = Counter("gg_database_unavailable", "Requests answered 503 (and worker runs skipped) "
                      "because the database could not be reached.", ["where"])

# SQLSTATEs that say the server cannot be used right now, not that the query is wrong.
SHUTDOWN_STATES = frozenset({
    "57P01",  # admin_shutdown: terminating connection due to administrator command
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: the database system is starting up / shutting down
    "53300",  # too_many_connections
})
SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk i/o error")
REPORTED = "guestguard.database_unavailable"


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database cannot be reached."""
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a requirement
        psycopg = None
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None)
        # Connection failures (refused, reset, "server closed the connection
        # unexpectedly") come from the client library and carry no SQLSTATE.
        return state is None or state.startswith("08") or state in SHUTDOWN_STATES
    if psycopg is not None and isinstance(exc, psycopg.InterfaceError):
        return "connection is closed" in str(exc)
    if type(exc).__module__ == "sqlite3" and type(exc).__name__ == "OperationalError":
        return str(exc).lower().startswith(SQLITE_UNAVAILABLE)
    return False


class OutageReport:
    """Counts every failure and logs the first one of each window."""

    def __init__(self, window: float, retry_after: int, clock=time.monotonic):
        self.window = window
        self.retry_after = retry_after
        self.clock = clock
        self.lock = threading.Lock()
        self.quiet_until = float("-inf")
        self.unlogged = 0

    def __call__(self, exc: BaseException, where: str = "request") -> bool:
        """Count and maybe log ``exc`` when it is an outage; False otherwise."""
        if not is_database_unavailable(exc):
            return False
        UNAVAILABLE.labels(where).inc()
        with self.lock:
            now = self.clock()
            if now < self.quiet_until:
                self.unlogged += 1
                return True
            self.quiet_until = now + self.window
            unlogged, self.unlogged = self.unlogged, 0
        log.warning("database unavailable (%s: %s); requests are answered 503 with Retry-After %d s; "
                    "further failures within %g s are counted (gg_database_unavailable_total), not logged%s",
                    type(exc).__name__, _first_line(exc), self.retry_after, self.window,
                    f" ({unlogged} since the last report)" if unlogged else "")
        return True


def _first_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    text = str(cause).strip().splitlines()
    return text[0][:300] if text else type(cause).__name__


def unavailable(request, exc: BaseException) -> Response:
    """The answer to a request the database could not serve (counted once
    per request, however many times it failed)."""
    report: OutageReport = request.registry["db.outage"]
    if not request.environ.get(REPORTED):
        request.environ[REPORTED] = True
        report(exc)
    seconds = report.retry_after
    message = f"The service is briefly unavailable. Please try again in {seconds} seconds."
    if is_api_request(request):
        response = json_error(request, 503, "unavailable", message, retry_after=seconds)
    else:
        try:
            # A page of its own: the layout's menu reads who is signed in, which
            # needs the database.
            response = render_to_response("errors/unavailable.jinja2",
                                          {"status": 503, "message": message}, request=request)
        except Exception:  # the error page itself must never fail
            response = Response(message, content_type="text/plain", charset="utf-8")
        response.status = 503
    response.headers["Retry-After"] = str(seconds)
    response.cache_control.no_store = True
    return response


def database_error(exc: Exception, request) -> Any:
    """Exception view for database errors raised by views and services."""
    if is_database_unavailable(exc):
        return unavailable(request, exc)
    return unexpected(exc, request)


def outage_tween_factory(handler, registry):
    """Above pyramid_tm: an outage met outside the views (a failing commit)
    answers 503 too."""

    def tween(request):
        try:
            return handler(request)
        except Exception as exc:
            if is_database_unavailable(exc):
                return unavailable(request, exc)
            raise

    return tween


def includeme(config) -> None:
    settings = config.get_settings()
    config.registry["db.outage"] = OutageReport(settings["db.outage_log_seconds"],
                                                settings["db.outage_retry_after"])
    contexts: list[type] = [sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError]
    try:
        import psycopg

        contexts.append(psycopg.Error)
    except ImportError:  # pragma: no cover
        pass
    for context in contexts:
        config.add_exception_view(database_error, context=context)
    config.add_tween("guestguard.outages.outage_tween_factory",
                     under="guestguard.cors.cors_tween_factory", over="pyramid_tm.tm_tween_factory")
