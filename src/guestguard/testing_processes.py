"""Real processes for the fault tests: worker processes whose email provider
logs every message it accepts, a gunicorn server with the repository's
configuration, and the waiting both need.

A test builds a :class:`FaultLab` through the ``fault_lab`` fixture
(``guestguard.testing``): the settings every process shares (the test's
database, a queue of its own), an app in the test process to queue messages
and read their rows, and the processes it starts, killed when the test ends.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import select

from guestguard.notifications.models import Notification
from guestguard.notifications.services import Outgoing, queue_notification, queue_notifications
from guestguard.plugins import hookimpl
from guestguard.testing import REPO_ROOT, command_env, scripted, wait_for

GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"

WORKER = textwrap.dedent('''
    """`guestguard worker` (the same run_worker) with an email provider that
    logs each message it accepts. SEND_SECONDS: each send takes that long
    after accepting; HANG: it hangs there (the process is then stopped or
    killed before it could record the outcome). PERIODIC: a periodic task,
    every minute, that logs each run."""
    import json, os, sys, time
    from huey import crontab
    from guestguard import make_config
    from guestguard.plugins import hookimpl
    from guestguard.tasks import run_worker

    settings = json.loads(sys.argv[1])
    log_path = sys.argv[2]

    def note(**fields):
        with open(log_path, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "at": time.time(), **fields}) + "\\n")

    class Provider:
        name = "faulty"
        channels = ("email",)

        def send(self, message):
            note(what="accepted", recipient=message.recipient, message_id=message.message_id)
            time.sleep(600 if os.environ.get("HANG") else float(os.environ.get("SEND_SECONDS", "0")))
            return "ok"

    def every_minute(request):
        note(what="periodic")

    class Plugin:
        @hookimpl
        def register_notification_providers(self, settings):
            return [Provider()]

        @hookimpl
        def configure(self, config):
            if os.environ.get("PERIODIC"):
                config.add_periodic_task(every_minute, crontab(minute="*"))

    config = make_config(settings, environ={}, extra_plugins=[("faulty", Plugin())])
    config.make_wsgi_app()
    note(what="ready")
    sys.exit(run_worker(config.registry, int(os.environ.get("THREADS", "2"))))
''')


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kill(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and whatever it started (its session: a gunicorn
    master's workers too), if any is still running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(10)


@contextlib.contextmanager
def killed_at_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The block uses ``process`` (started with ``start_new_session``);
    whatever happens, neither it nor its children are left running."""
    try:
        yield process
    finally:
        kill(process)


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
    """Send ``signum`` and wait: the exit status and the seconds it took."""
    started = time.monotonic()
    process.send_signal(signum)
    status = process.wait(timeout)
    return status, time.monotonic() - started


class RefusingProvider:
    """The test process's own provider: it only queues, the workers send."""

    name = "faulty"
    channels = ("email",)

    def send(self, message):
        raise AssertionError("the test process sends nothing")

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


def lab_settings(db_url: str, queue_url: str, name: str, overrides: dict[str, str]) -> dict[str, str]:
    """What the test process and its workers share: the database, a queue
    of their own, and the provider that logs."""
    return {
        "app.env": "test", "app.base_url": "http://guestguard.test", "db.url": db_url,
        "huey.url": queue_url, "huey.immediate": "false", "huey.name": name,
        "notifications.email.provider": "faulty", "notifications.sms.provider": "",
        "passwords.memory_kib": "19456", "passwords.time_cost": "2", "passwords.parallelism": "1",
        **overrides,
    }


class FaultLab:
    """Worker processes on shared settings, the provider's log, and the
    notification rows, seen from the test."""

    def __init__(self, directory: Path, settings: dict[str, str], make_app):
        self.directory = directory
        self.settings = settings
        self.app = make_app(settings, plugins=[("faulty", RefusingProvider())])
        self.registry = self.app.app.registry
        self.registry["huey"].flush()
        self.log = directory / "provider.log"
        self.script = directory / "worker.py"
        self.script.write_text(WORKER)
        self.processes: list[subprocess.Popen] = []

    def queue(self, count: int, prefix: str = "guest", bulk: bool = False) -> list[str]:
        """Queue ``count`` emails in one transaction (a fan-out), each as a task
        of its own or, ``bulk``, as a bulk send does (a batch to a task);
        their recipients."""
        recipients = [f"{prefix}{n:04}@example.com" for n in range(count)]
        context = {"base_url": "https://gg.example"}
        with scripted(self.registry) as env, env["request"].tm:
            ctx = env["request"].ctx
            if bulk:
                queue_notifications(ctx, [Outgoing(channel="email", recipient=recipient, template="test_message",
                                                   context=context) for recipient in recipients])
            for recipient in [] if bulk else recipients:
                queue_notification(ctx, channel="email", recipient=recipient, template="test_message",
                                   context=context)
        return recipients

    def start(self, *, threads: int = 2, send_seconds: float = 0.0, hang: bool = False, periodic: bool = False,
              ready: bool = True, settings: dict[str, str] | None = None) -> subprocess.Popen:
        """A worker process, on the lab's settings and ``settings``; with
        ``ready``, once its app is built."""
        variables = {"THREADS": str(threads), "SEND_SECONDS": str(send_seconds), **({"HANG": "1"} if hang else {}),
                     **({"PERIODIC": "1"} if periodic else {})}
        index = len(self.processes)
        arguments = [json.dumps({**self.settings, **(settings or {})}), str(self.log)]
        with (self.directory / f"worker-{index}.err").open("w") as errors:
            process = subprocess.Popen([sys.executable, str(self.script), *arguments],
                                       env=command_env(**variables), stdout=subprocess.DEVNULL, stderr=errors,
                                       start_new_session=True)
        self.processes.append(process)
        if ready:
            wait_for(lambda: self.ready(process), 60, "the worker to start")
            assert process.poll() is None, self.errors(process)
        return process

    def ready(self, process: subprocess.Popen) -> bool:
        """Whether ``process`` has built its app (or has exited)."""
        return (any(e["what"] == "ready" and e["pid"] == process.pid for e in read_log(self.log))
                or process.poll() is not None)

    def errors(self, process: subprocess.Popen) -> str:
        """What the worker wrote on stderr."""
        return (self.directory / f"worker-{self.processes.index(process)}.err").read_text()

    def accepted(self, pid: int | None = None, recipients: Iterable[str] | None = None) -> list[dict]:
        """The provider's "accepted" entries, of one worker and some recipients if named."""
        wanted = set(recipients) if recipients is not None else None
        return [e for e in read_log(self.log) if e["what"] == "accepted" and (pid is None or e["pid"] == pid)
                and (wanted is None or e["recipient"] in wanted)]

    def by_recipient(self) -> dict[str, list[dict]]:
        deliveries: dict[str, list[dict]] = collections.defaultdict(list)
        for entry in self.accepted():
            deliveries[entry["recipient"]].append(entry)
        return dict(deliveries)

    def rows(self) -> dict[str, Notification]:
        """Every notification row, by recipient, as stored now."""
        with scripted(self.registry) as env, env["request"].tm:
            db = env["request"].db
            rows = list(db.scalars(select(Notification)))
            db.expunge_all()
        return {row.recipient: row for row in rows}

    def statuses(self) -> collections.Counter:
        return collections.Counter(row.status for row in self.rows().values())

    def close(self) -> None:
        for process in self.processes:
            kill(process)
        self.registry["huey"].flush()


# --- gunicorn ---------------------------------------------------------------------


def paste_ini(path: Path, settings: dict[str, str], pipeline: Iterable[str] = ()) -> Path:
    """An ini file serving the app on ``settings`` (the PasteDeploy way
    production.ini does), behind the filters named ``[filter:<name>]`` in
    ``pipeline`` (each ``use = call:module:factory``)."""
    lines = ["[app:guestguard]", "use = egg:guestguard", *(f"{key} = {value}" for key, value in settings.items()),
             ""]
    filters = list(pipeline)
    for name in filters:
        lines += [f"[filter:{name}]", f"use = call:{name}:make_filter", ""]
    lines += ["[pipeline:main]", f"pipeline = {' '.join([*filters, 'guestguard'])}", ""]
    path.write_text("\n".join(lines))
    return path


def start_gunicorn(ini: Path, port: int, errors: Path, pythonpath: Iterable[Path] = (),
                   options: Iterable[str] = (), **variables: str) -> subprocess.Popen:
    """gunicorn with the repository's gunicorn.conf.py (and command-line
    ``options``, which win over it) on 127.0.0.1:``port``, answering /health
    (else an AssertionError with its stderr, and no server left running)."""
    env = command_env(GUNICORN_BIND=f"127.0.0.1:{port}", **variables)
    env["PYTHONPATH"] = ":".join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    with errors.open("w") as stream:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), *options,
                                   "--paste", str(ini)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=stream, start_new_session=True)

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.returncode}:\n{errors.read_text()}")
        try:
            return get(port, "/health", timeout=2)[0] == 200
        except OSError:  # not listening yet, or its workers still loading the app
            return False

    try:
        wait_for(answers, 60, "gunicorn to answer")
    except BaseException:
        kill(server)
        raise
    return server


class EventStream:
    """The raw lines of one Server-Sent Events response of a served app."""

    def __init__(self, port: int, path: str):
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()
        assert self.response.status == 200

    def read_until(self, start: bytes) -> bytes:
        """Read up to the first line that starts with ``start``; that line."""
        while not (line := self.response.readline()).startswith(start):
            assert line, f"the stream ended before {start!r}"
        return line

    def rest(self) -> bytes:
        """What comes until the server ends the response."""
        return self.response.read()


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET on a connection of its own, closed after: (status, body)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def refuses(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# --- PgBouncer --------------------------------------------------------------------

PGBOUNCER = Path("/usr/sbin/pgbouncer")  # Debian's package (make pgbouncer-deps)

PGBOUNCER_INI = """\
[databases]
{name} = host={host} port={port} dbname={name}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = 500
{run_as}
"""


def start_pgbouncer(db_url: str, directory: Path, pool: int = 4, listen: int | None = None
                    ) -> tuple[subprocess.Popen, str]:
    """PgBouncer in transaction pooling mode on port ``listen`` (a free one
    by default) in front of the PostgreSQL database of ``db_url`` (trust
    authentication, as the test server has), sharing ``pool`` server
    connections among all its clients: the process, and the URL that reaches
    the database through it."""
    from sqlalchemy.engine import make_url

    from guestguard.testing import free_port

    url = make_url(db_url)
    users = directory / "pgbouncer-users.txt"
    users.write_text(f'"{url.username or "postgres"}" ""\n')
    listen = listen or free_port()
    ini = directory / "pgbouncer.ini"
    # PgBouncer refuses to run as root; started as root, it becomes postgres.
    ini.write_text(PGBOUNCER_INI.format(name=url.database, host=url.host or "127.0.0.1", port=url.port or 5432,
                                        listen=listen, users=users, pool=pool,
                                        run_as="user = postgres" if os.geteuid() == 0 else ""))
    log = directory / "pgbouncer.log"
    with log.open("a") as output:
        process = subprocess.Popen([str(PGBOUNCER), str(ini)], stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for(lambda: process.poll() is not None or not refuses(listen), 20, "PgBouncer to listen")
        assert process.poll() is None, f"PgBouncer exited with {process.returncode}:\n{log.read_text()}"
    except BaseException:
        kill(process)
        raise
    return process, url.set(host="127.0.0.1", port=listen).render_as_string(hide_password=False)
