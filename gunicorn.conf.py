"""gunicorn's settings for GuestGuard's web processes:

    gunicorn -c gunicorn.conf.py --paste production.ini

What differs between deployments comes from the environment (the names
below; command-line options still win over this file). docs/operations.md,
"Shutdown and restarts", explains each choice.

On SIGTERM the master stops listening and tells each worker to stop; a
worker takes no new connection, finishes the requests it is serving (within
``graceful_timeout``) and exits, and the master exits after the last one.
GuestGuardWorker adds the two things gthread does not do by itself when a
worker stops (SIGTERM, ``max_requests``): it gives up its copy of the
listening socket at once, so a new connection is refused instead of waiting
in the queue until the worker is gone, and it ends its live activity
streams, each of which would otherwise hold the worker for up to
``guard.stream.max_seconds``.

Metrics: every worker writes its Prometheus values to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape of /metrics, whichever worker
answers, adds up all of them. The master empties that directory when it
starts (a directory it makes itself when the variable is unset, removed at
exit) and marks each worker that exits dead, so its gauges (live streams,
connections in use) stop counting while its counters stay in the totals.

Only gunicorn (and prometheus_client's file handling) is imported here, but
the master imports part of GuestGuard all the same: PasteDeploy finds the
app's factory in the package, and the ini's log formatter is one of its
modules. The workers a reload (SIGHUP) starts re-read the ini and build the
app anew, with the code the master holds; new code needs a new master
(USR2, then TERM to the old one; docs/operations.md, "Upgrading the code").
"""
import ctypes
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.workers.gthread import ThreadWorker


def _number(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    return int(value) if value else default


# host:port, or unix:/path; several separated by commas.
bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:6543").split(",")
        if address.strip()]
workers = _number("WEB_CONCURRENCY", 2)
# Each open live stream holds a thread for its whole life, so a worker needs
# more threads than guard.stream.max_streams (4): the rest serve ordinary
# requests. Raise both together (post_worker_init warns when they clash).
threads = _number("GUNICORN_THREADS", 8)
# A gthread worker's main loop never waits on a request, so this only
# catches a hung worker; it cuts neither a slow request nor a stream short.
timeout = 30
# After SIGTERM, how long the requests in progress get to finish (streams end
# at once). Keep it below the service manager's stop timeout.
graceful_timeout = _number("GUNICORN_GRACEFUL_TIMEOUT", 20)
# Idle seconds a kept-alive connection from the proxy stays open; below the
# proxy's own idle timeout for upstream connections. A stopping worker
# closes idle ones within 2 s.
keepalive = 5
# Recycle a worker after this many requests (plus up to a tenth more, so the
# workers do not restart together): bounds a slow leak, in a plugin say, at
# the cost of one reconnection of that worker's streams. 0 turns it off.
max_requests = _number("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
# The proxies whose X-Forwarded-Proto is believed (https links). The app
# reads X-Forwarded-For itself (app.trusted_proxies); gunicorn leaves it alone.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# A service manager tracks the master itself; a pid file is only for scripts.
pidfile = os.environ.get("GUNICORN_PIDFILE") or None
# gunicorn 25.1+ opens a control socket at one path per user unless told
# not to: two servers of one user would share it. Name one to have it.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
proc_name = "guestguard"


def _stop_serving_streams(worker) -> None:
    from guestguard.activity.live import end_streams

    ended = end_streams()
    if ended:
        worker.log.info("ended %d live stream(s); their pages reconnect elsewhere", ended)


class GuestGuardWorker(ThreadWorker):
    """gthread, and when the worker stops: no listening socket, no streams."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:  # stopping, not merely full
            for listener in self.sockets:
                listener.close()
            _stop_serving_streams(self)

    def is_parent_alive(self) -> bool:
        # A worker whose master died (killed, out of memory) stops like one
        # told to: otherwise it would keep the port, and its streams, until
        # graceful_timeout, and a master started again could not bind.
        if super().is_parent_alive():
            return True
        self.alive = False
        return False


worker_class = GuestGuardWorker


def worker_int(worker) -> None:
    """SIGINT or SIGQUIT: the worker exits now; its streams end first, or
    their threads would hold the exit until the master kills it."""
    _stop_serving_streams(worker)


# glibc gives each thread that allocates its own malloc arena (up to eight
# per core), and each arena keeps what was freed in it: a worker of 8
# threads grows by tens of MiB that way under load. Two arenas a worker is
# what its threads contend for little (most of a request's time is spent
# outside malloc, holding the GIL or waiting on the database).
MALLOC_ARENAS = _number("MALLOC_ARENA_MAX", 2)
M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h


def post_fork(server, worker) -> None:
    """Cap the worker's malloc arenas (glibc only; elsewhere nothing)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    if not mallopt(M_ARENA_MAX, MALLOC_ARENAS):
        server.log.warning("could not cap malloc arenas at %d", MALLOC_ARENAS)


def post_worker_init(worker) -> None:
    registry = getattr(worker.wsgi, "registry", None)
    streams = registry.settings.get("guard.stream.max_streams") if registry is not None else None
    if streams is not None and streams >= worker.cfg.threads:
        worker.log.warning("guard.stream.max_streams (%d) is not below the threads per worker (%d): open "
                           "live streams can take every thread; raise GUNICORN_THREADS", streams,
                           worker.cfg.threads)


METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server) -> None:
    """Before the first worker: a metrics directory for this server, empty.
    Files left by an earlier server would add its counts to ours."""
    directory = os.environ.get(METRICS_DIR_VARIABLE, "").strip()
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob("*.db"):
            leftover.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="guestguard-metrics-")
        server.guestguard_metrics_dir = directory
    # The workers are forked from here, and inherit it.
    os.environ[METRICS_DIR_VARIABLE] = directory
    server.log.info("metrics of the workers are added up in %s", directory)


def child_exit(server, worker) -> None:
    """A worker exited (stopped, recycled after max_requests, or killed):
    its live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    made = getattr(server, "guestguard_metrics_dir", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
